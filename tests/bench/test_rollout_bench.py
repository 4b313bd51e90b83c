import json

from bench.rollout_bench import run_rollout_bench


def test_rollout_bench_measures_every_mode_in_one_run(tmp_path):
    out = tmp_path / "rollout.json"
    doc = run_rollout_bench("mujoco/Reach-v1", num_envs=4, num_workers=2, seeds=1, group_size=2, repeats=1,
                            out=out)
    assert json.loads(out.read_text()) == doc
    assert doc["env_only_env_steps_per_s"] > 0 and doc["policy_only_env_steps_per_s"] > 0
    assert {k.split("@")[0] for k in doc["loop"]} == {"sequential", "pipelined"}
    assert all(v["env_steps"] > 0 for v in doc["loop"].values())
    assert doc["best_pipelined_over_best_sequential"] > 0
