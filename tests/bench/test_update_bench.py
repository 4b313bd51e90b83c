import json

import pytest

from bench.update_bench import UpdateBenchConfig, main, run_update_bench

MICRO = {"model": "tiny", "prompts": 2, "group_size": 2, "max_new_tokens": 4, "steps": 1, "warmup": 0, "threads": 1}


def _check_side(r: dict, tokens: int) -> None:
    assert r["tokens_per_s"] > 0 and r["generation_tokens_per_s"] > 0 and r["update_tokens_per_s"] > 0
    assert r["completion_tokens_per_step"] == [tokens]  # fixed-length generation: every row its full budget
    assert r["prompt_tokens_per_step"][0] > 0
    assert r["mean_step_s"] == pytest.approx(r["mean_generation_s"] + r["mean_update_s"], abs=2e-3)
    assert 0 < r["mean_sampling_s"] <= r["mean_generation_s"] + 1e-3


def test_update_bench_ours_side(tmp_path):
    out = tmp_path / "update.json"
    doc = run_update_bench(UpdateBenchConfig(**MICRO, sides=["ours"], out=str(out)))
    assert json.loads(out.read_text()) == doc
    _check_side(doc["ours"], 2 * 2 * 4)
    assert doc["trl"] is None and doc["ratio_ours_over_trl"] is None
    assert doc["settings"]["completion_tokens_per_step"] == 16 and doc["settings"]["torch_threads"] == 1
    assert doc["versions"]["torch"] and len(doc["machine"]["load_average_1_5_15"]["start"]) == 3


def test_update_bench_against_trl(tmp_path, capsys):
    pytest.importorskip("trl")
    out = tmp_path / "update.json"
    main([f"{k}={v}" for k, v in MICRO.items()] + [f"out={out}"])
    assert "ours/TRL" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    for side in ("ours", "trl"):
        _check_side(doc[side], 16)
    assert doc["same_prompt_tokens"] is True  # same prompts, tokenised the same way on both sides
    assert doc["ratio_ours_over_trl"] == pytest.approx(doc["ours"]["tokens_per_s"] / doc["trl"]["tokens_per_s"], 0.01)
    assert all(doc[k] > 0 for k in doc if k.startswith("ratio_"))
    assert doc["versions"]["trl"]
