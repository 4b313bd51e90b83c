import json

import pytest

pytest.importorskip("ray")

from bench.distributed_bench import project, run_distributed_bench  # noqa: E402


def test_distributed_bench_measures_both_transports_in_one_run(tmp_path):
    out = tmp_path / "distributed.json"
    doc = run_distributed_bench("mujoco/Reach-v1", num_envs=4, num_workers=2, group_size=2, seconds=0.3, repeats=1,
                                calls=5, overhead_workers=[2], out=out)
    assert json.loads(out.read_text()) == doc
    for side in ("local", "ray"):
        assert doc[side]["env_only_env_steps_per_s"] > 0 and doc[side]["rollout_env_steps_per_s"] > 0
        assert set(doc[side]["fanout_call_ms"]) == {"2"} and min(doc[side]["fanout_call_ms"].values()) > 0
    assert doc["ray_over_local"]["env_only"] > 0
    rows = doc["projection"]["rows"]
    assert [r["nodes"] for r in rows] == [1, 2, 4, 8, 16, 32, 64] and doc["projection"]["assumptions"]


def test_projection_grows_with_nodes_until_the_fanout_dominates():
    rows = project(per_worker_rate=100.0, envs_per_worker=8, chunk=8, a_ms=1.0, b_ms=1.0, workers_per_node=16,
                   nodes=[1, 64])
    # 16 workers: 0.64 s of simulation + 17 ms fan-out; 1024 workers: 1.025 s of fan-out per round
    assert rows[0]["env_steps_per_s"] == round(16 * 64 / (0.64 + 0.017))
    assert rows[1]["env_steps_per_s"] == round(1024 * 64 / (0.64 + 1.025))
    assert rows[1]["fanout_share"] > 0.6 > rows[0]["fanout_share"]
