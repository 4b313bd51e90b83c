"""`vla-rl bench phases`: the expert reaches every phase of PlaceThenOpenDrawer in order and succeeds; a random
policy reaches none of them; the demo's cabinet side is found; the table is written."""

from __future__ import annotations

import json

from bench.phases_bench import BenchPhasesConfig, run_phases_bench


def test_expert_reaches_each_phase_in_order(tmp_path):
    cfg = BenchPhasesConfig(policies=["expert"], episodes=2, results=str(tmp_path / "phases.json"))
    doc = run_phases_bench(cfg)
    [run] = doc["runs"]
    assert run["all"] == {"episodes": 2, "success": 1.0, "lifted": 1.0, "placed": 1.0, "opened": 1.0}
    for ep in run["episodes"]:
        assert ep["lifted_step"] < ep["placed_step"] < ep["opened_step"] <= ep["steps"] < 250
    assert run["episodes"][0]["demo_side"]  # train seed 0 is the demo's own initial state
    assert json.loads((tmp_path / "phases.json").read_text())["runs"][0]["all"] == run["all"]


def test_sampled_checkpoint_is_seeded(tmp_path, tiny_vla):
    """A checkpoint sampled at T 1: the same seed gives the same episode, another seed another one."""
    tiny_vla.save_pretrained(tmp_path / "ckpt")
    runs = [run_phases_bench(BenchPhasesConfig(policies=[str(tmp_path / "ckpt")], episodes=1, image_size=32,
                                               temperature=1.0, seed=s, results=str(tmp_path / f"p{i}.json")))
            for i, s in enumerate([0, 0, 1])]
    eps = [r["runs"][0]["episodes"] for r in runs]
    assert eps[0] == eps[1] and eps[0][0]["tcp_end"] != eps[2][0]["tcp_end"]
    assert runs[0]["temperature"] == 1.0 and not eps[0][0]["success"]
