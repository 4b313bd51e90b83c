import json

import pytest

from bench.micro_batch_bench import BenchMicroConfig, run_micro_bench


def test_micro_batches_reach_the_whole_updates_parameters(tmp_path):
    out = tmp_path / "micro.json"
    doc = run_micro_bench(BenchMicroConfig(size="micro", samples=32, micros=[None, 8], threads=1, results=str(out)))
    assert json.loads(out.read_text()) == doc
    whole, parts = doc["settings"]
    assert whole["micro_batch_size"] is None and parts["micro_batch_size"] == 8
    assert parts["max_abs_param_diff_vs_first"] < 1e-5  # the same step, to float rounding
    assert parts["grad_norm"] == pytest.approx(whole["grad_norm"], rel=1e-4)
    assert whole["peak_rss_mb"] >= whole["rss_before_update_mb"] > 0 and whole["update_s"] > 0
