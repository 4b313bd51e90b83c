import json

import pytest

from bench.update_bench import UpdateBenchConfig, informative_fraction, main, reward_pattern, run_update_bench

MICRO = {"model": "tiny", "prompts": 2, "group_size": 2, "max_new_tokens": 4, "steps": 1, "warmup": 0, "threads": 1}


def _check_side(r: dict, tokens: int) -> None:
    assert r["tokens_per_s"] > 0 and r["generation_tokens_per_s"] > 0 and r["update_tokens_per_s"] > 0
    assert r["tokens_per_cpu_s"] > 0
    assert r["completion_tokens_per_step"] == [tokens]  # fixed-length generation: every row its full budget
    assert r["prompt_tokens_per_step"][0] > 0
    assert r["mean_step_s"] == pytest.approx(r["mean_generation_s"] + r["mean_update_s"], abs=2e-3)
    assert 0 < r["mean_sampling_s"] <= r["mean_generation_s"] + 1e-3


def test_reward_pattern_is_seeded_and_mixed_as_asked():
    cfg = UpdateBenchConfig(prompts=16, group_size=8, mixed_groups=0.5)
    a, b = reward_pattern(cfg, 3), reward_pattern(cfg, 3)
    assert a.shape == (16, 8) and a.equal(b) and not a.equal(reward_pattern(cfg, 4))
    mixed = (a.min(1).values != a.max(1).values).sum()
    assert mixed == 8 and a[a.sum(1) == 0].numel() == 8 * 8  # the other half all zero
    assert informative_fraction(a.flatten(), 8) == 0.5
    assert informative_fraction(reward_pattern(UpdateBenchConfig(prompts=4, mixed_groups=1.0), 0).flatten(), 8) == 1


def test_update_bench_ours_side(tmp_path):
    out = tmp_path / "update.json"
    doc = run_update_bench(UpdateBenchConfig(**MICRO, sides=["ours", "ours_noskip"], out=str(out)))
    assert json.loads(out.read_text()) == doc
    _check_side(doc["ours"], 2 * 2 * 4)
    _check_side(doc["ours_noskip"], 2 * 2 * 4)
    # one group of two mixed, one all zero: half the samples informative, with the skip on or off
    assert doc["ours"]["informative_frac_per_step"] == doc["ours_noskip"]["informative_frac_per_step"] == [0.5]
    assert doc["trl"] is None and doc["ratio_ours_over_trl"] is None and doc["ratio_ours_noskip_over_trl"] is None
    assert doc["settings"]["completion_tokens_per_step"] == 16 and doc["settings"]["torch_threads"] == 1
    assert doc["versions"]["torch"] and len(doc["machine"]["load_average_1_5_15"]["start"]) == 3


def test_update_bench_against_trl(tmp_path, capsys):
    pytest.importorskip("trl")
    out = tmp_path / "update.json"
    main([f"{k}={v}" for k, v in MICRO.items()] + [f"out={out}"])
    assert "ours/TRL" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    for side in ("ours", "ours_noskip", "trl"):
        _check_side(doc[side], 16)
        assert doc[side]["informative_frac_per_step"] == [0.5]  # the same reward pattern on every side
    assert doc["same_prompt_tokens"] is True  # same prompts, tokenised the same way on both sides
    assert doc["ratio_ours_over_trl"] == pytest.approx(doc["ours"]["tokens_per_s"] / doc["trl"]["tokens_per_s"], 0.01)
    assert all(doc[k] > 0 for k in doc if k.startswith("ratio_"))
    assert doc["versions"]["trl"]
