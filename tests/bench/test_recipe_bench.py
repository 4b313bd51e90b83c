"""`vla-rl bench recipe` on a micro budget: the full-range recipe (its curriculum included) through the real phases
for one seed, the table and the curves written, and a second call reading the finished run back."""

from __future__ import annotations

import copy
import json

from bench.recipe_bench import BenchRecipeConfig, run_config, run_recipe_bench
from tests.bench.test_range_bench import MICRO


def test_micro_recipe_bench_runs_reads_back_and_plots(tmp_path):
    micro = copy.deepcopy(MICRO)
    micro["grpo"] |= {"iterations": 2, "eval": {"every": 1, "episodes": 1}}
    cfg = BenchRecipeConfig(config="configs/vla_grpo_full.yaml", seeds=[3], overrides=micro,
                            out=str(tmp_path / "full"), results=str(tmp_path / "full.json"),
                            plot=str(tmp_path / "curves.png"))
    job = run_config(cfg, 3)
    assert job.sft.seed == 3 and job.grpo.seed == 3 and job.out == str(tmp_path / "full_s3")
    assert job.grpo_config().curriculum.spreads[0] == 0.1  # the recipe's ladder survives the overrides
    doc = run_recipe_bench(cfg)
    [r] = doc["runs"]
    assert r["seed"] == 3 and r["grpo_iterations"] == 2 and r["test_episodes"] == 2
    assert [v["iteration"] for v in r["curves"]["val"]] == [1, 2]
    assert set(r["curves"]["val"][0]) == {"iteration", "mujoco/OpenDrawer-v1", "mujoco/PickCube-v1",
                                          "mujoco/PushCube-v1"}
    assert r["last_spread"] == {"iteration": 2, "mujoco/OpenDrawer-v1": 0.1, "mujoco/PickCube-v1": 0.1,
                                "mujoco/PushCube-v1": 0.1}  # two rounds: the window of three is not full
    assert json.loads((tmp_path / "full.json").read_text())["lift_per_seed"] == [r["lift"]]
    assert (tmp_path / "curves.png").stat().st_size > 0
    mtime = (tmp_path / "full_s3" / "results.json").stat().st_mtime
    assert run_recipe_bench(cfg)["runs"][0]["lift"] == r["lift"]  # read back, not run again
    assert (tmp_path / "full_s3" / "results.json").stat().st_mtime == mtime
