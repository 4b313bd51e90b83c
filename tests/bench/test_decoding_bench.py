import json

import pytest
import torch

from bench.decoding_bench import BenchDecodingConfig, run_decoding_bench, token_stats
from tests.vla_rl.policies.test_vla import make, micro


def test_token_stats_on_hand_built_distributions():
    """Token 0: a spike of 30% at bin 10 and 70% spread over bins 100..139 (argmax 10, median 111: gap 101);
    token 1: one sharp bin (gap 0, entropy 0)."""
    p = torch.zeros(1, 2, 256)
    p[0, 0, 10] = 0.3
    p[0, 0, 100:140] = 0.7 / 40
    p[0, 1, 42] = 1.0
    s = token_stats(p, [0, 1], far=5)
    assert s["mean_gap_bins"] == pytest.approx(101 / 2) and s["far_fraction"] == 0.5 and s["tokens"] == 2
    h = -(0.3 * torch.log(torch.tensor(0.3)) + 0.7 * torch.log(torch.tensor(0.7 / 40)))
    assert s["entropy_nats"] == pytest.approx(float(h) / 2, rel=1e-5)
    assert token_stats(p, [1], far=5)["mean_gap_bins"] == 0


def test_decoding_bench_reads_every_checkpoint_on_the_same_observations(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make(micro(), seed=0).save_pretrained(a)
    make(micro(), seed=1).save_pretrained(b)
    cfg = BenchDecodingConfig(policies=[str(a), str(b)], task="mujoco/Reach-v1", episodes=2, chunks=2,
                              out=str(tmp_path / "decoding.json"))
    doc = run_decoding_bench(cfg)
    assert json.loads((tmp_path / "decoding.json").read_text()) == doc
    rows = doc["policies"]
    assert rows[str(a)]["tokens"] == 2 * 2 * 2 * 4  # episodes x chunks x chunk_size x dims
    assert rows[str(a)] != rows[str(b)] and all(r["entropy_nats"] > 0 for r in rows.values())
    with pytest.raises(ValueError, match=r"dims \[9\] are outside"):
        run_decoding_bench(cfg.model_copy(update={"dims": [9]}))
