import json

from bench.vla7b_bench import BenchVLA7BConfig, run_vla7b_bench


def test_vla7b_bench_runs_its_code_path_on_a_cpu_with_the_tiny_preset(tmp_path):
    out = tmp_path / "vla7b.json"
    cfg = BenchVLA7BConfig(preset="tiny", device="cpu", dtype="float32", batch=3, warmup=1, repeats=2, ar_repeats=1,
                           steps=2, checkpointing=True, out=str(out))
    doc = run_vla7b_bench(cfg)
    assert json.loads(out.read_text()) == doc
    assert doc["decode_parallel"]["tokens_per_decode"] == 3 * 56
    assert doc["decode_parallel"]["tokens_per_s"] > 0 and doc["parallel_over_autoregressive"] > 0
    (upd,) = doc["update"]
    assert upd["checkpointing"] is True and len(upd["seconds_all"]) == 2
    assert upd["optimizer_state_gib"] > 0 and upd["grad_norm"] > 0
