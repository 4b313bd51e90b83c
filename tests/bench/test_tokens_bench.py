"""`vla-rl bench tokens`: sequence lengths of each variant and the results file."""

import json

from bench.tokens_bench import BenchTokensConfig, run_tokens_bench


def test_tokens_bench_counts_the_sequence_and_times_every_variant(tmp_path):
    out = tmp_path / "tokens.json"
    cfg = BenchTokensConfig(variants=[(1, 24), (2, 16)], minibatch=4, act_batch=2, repeats=1, threads=1, out=str(out))
    doc = run_tokens_bench(cfg)
    base, merged = doc["variants"]["merge1_instr24"], doc["variants"]["merge2_instr16"]
    # two cameras of an 8 x 8 patch grid (merged: 4 x 4), the instruction window, proprio, 8 x 7 action slots
    assert base["sequence_tokens"] == 2 * 64 + 24 + 1 + 56
    assert merged["sequence_tokens"] == 2 * 16 + 16 + 1 + 56
    assert base["update_speedup"] == 1.0 and merged["update_s"] > 0 and merged["act_s"] > 0
    assert json.loads(out.read_text())["variants"].keys() == doc["variants"].keys()
