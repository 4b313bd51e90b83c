"""`vla-rl bench range` on a micro budget: the quickstart recipe at two range fractions through the real phases
(demos, SFT, tests, GRPO), the table and plot written, and a second call reading the finished runs instead of
running them again."""

from __future__ import annotations

import json

import pytest

from bench.range_bench import BenchRangeConfig, plan, run_range_bench, suite, summarise
from tests.vla_rl.trainers.test_quickstart import MICRO_POLICY

MICRO = {  # the quickstart's keys that make a run take seconds (the suite, out and seeds are the bench's)
    "image_size": 32, "test_episodes": 2, "pretrain_tasks": [], "time_budget_min": None, "env": {"num_envs": 2},
    "sft": {"policy": MICRO_POLICY, "steps": 2, "batch_size": 8, "warmup_steps": 1, "eval_episodes": 0,
            "threads": 1, "data_weights": [1, 1, 1], "env": {"num_envs": 2}},
    "grpo": {"iterations": 1, "sampling": {"seeds_per_iter": 1, "group_size": 2},
             "optim": {"minibatch_size": 16, "max_update_samples": 16}, "eval": {"every": 1, "episodes": 0},
             "threads": 1, "env": {"num_envs": 2}},
}


def test_the_suite_and_plan():
    assert suite(1.0) == ["mujoco/OpenDrawer-v1", "mujoco/PickCube-v1", "mujoco/PushCube-v1"]
    assert suite(0.25)[1] == "mujoco/PickCube-v1@spread=0.25"
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        suite(0.0)
    cfg = BenchRangeConfig()  # the grid: three seeds at the full range, one elsewhere
    assert plan(cfg) == [(0.1, 0), (0.25, 0), (0.5, 0), (1.0, 0), (1.0, 1), (1.0, 2)]
    assert cfg.overrides == {"time_budget_min": None, "grpo": {"iterations": 50}}  # RL budget in iterations, not time


def test_summary_means_over_seeds():
    rows = [{"fraction": 1.0, "seed": s, "before": {"mean": b}, "after": {"mean": a}, "lift": a - b}
            for s, b, a in ((0, 0.2, 0.5), (1, 0.4, 0.5))]
    [s] = summarise(rows)
    assert s == {"fraction": 1.0, "seeds": [0, 1], "before": 0.3, "after": 0.5, "lift": pytest.approx(0.2),
                 "lift_per_seed": [pytest.approx(0.3), pytest.approx(0.1)]}


def test_micro_range_bench_runs_reads_back_and_plots(tmp_path):
    cfg = BenchRangeConfig(fractions=[0.25, 1.0], seeds_widest=[0], seeds_other=[0], overrides=MICRO,
                           out=str(tmp_path / "runs"), results=str(tmp_path / "range.json"),
                           plot=str(tmp_path / "range.png"))
    doc = run_range_bench(cfg)
    assert [(r["fraction"], r["seed"]) for r in doc["runs"]] == [(0.25, 0), (1.0, 0)]
    narrow = json.loads((tmp_path / "runs" / "f0.25_s0" / "results.json").read_text())
    assert narrow["tasks"] == suite(0.25) and narrow["test_episodes"] == 2
    assert (tmp_path / "runs" / "f0.25_s0" / "data" / "PickCube-v1@spread=0.25" / "meta" / "info.json").is_file()
    assert json.loads((tmp_path / "range.json").read_text())["summary"] == doc["summary"]
    assert (tmp_path / "range.png").stat().st_size > 0
    mtime = (tmp_path / "runs" / "f1_s0" / "results.json").stat().st_mtime
    again = run_range_bench(cfg)  # finished runs are read, not run again
    assert again["runs"] == doc["runs"] and (tmp_path / "runs" / "f1_s0" / "results.json").stat().st_mtime == mtime
