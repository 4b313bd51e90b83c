"""The data-parallel learner: 2 gloo ranks, each forwarding half of every minibatch, end one GRPO update with the
parameters of one process on the same global batch, for losses with every kind of normaliser; a rank killed mid-update
is a clear error in the survivor, not a hang."""

from __future__ import annotations

import time

import pytest
import torch

from bench.data_parallel_bench import synthetic_rollout, update_cases, update_once
from vla_rl.distributed.learner import DataParallel, DataParallelFailed, run_data_parallel

LR = 1e-3
CASES = {  # name -> config groups; 32 samples, minibatches of 16 (and 31: a 1-row tail leaves rank 1 empty)
    "grpo token-mean": {},
    "drgrpo constant normaliser": {"loss": {"advantage": "drgrpo", "agg_mode": "seq-mean-token-sum-norm"}},
    "clip_cov per-sequence mean, KL to the reference, a 1-row minibatch": {
        "loss": {"name": "clip_cov", "agg_mode": "seq-mean-token-mean", "kl_coef": 0.1,
                 "kwargs": {"clip_cov_ratio": 0.05, "clip_cov_lb": -10.0, "clip_cov_ub": 10.0}},
        "optim": {"minibatch_size": 31}},
    "nft": {"loss": {"name": "nft"}},
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_vla):
    """The micro VLA's checkpoint and a 32-sample rollout of it, on disk for the ranks."""
    d = tmp_path_factory.mktemp("dp")
    tiny_vla.save_pretrained(d / "init")
    torch.save(synthetic_rollout(tiny_vla, trajectories=8, steps=4), d / "rollout.pt")
    torch.save(synthetic_rollout(tiny_vla, trajectories=8, steps=4, seed=1), d / "other.pt")
    return str(d / "init"), str(d / "rollout.pt"), d


def test_two_gloo_ranks_end_with_the_parameters_of_one_process(saved):
    """Tolerance: the ranks sum their halves' gradients (one all-reduce) where one process sums every row in one
    batched backward, so float32 summation order alone separates them: ~1e-7 relative on the gradient, hence the
    loss and gradient-norm metrics agree to 1e-5 relative (measured <= 1.5e-6). Adam divides each coordinate by its
    own RMS, so a coordinate whose gradient is at rounding level can move by a visible fraction of lr: the
    parameters' update (4 steps, ~4 lr per coordinate) agrees to 1e-3 of its norm (measured <= 3.1e-5) and every
    parameter to lr / 50 (measured <= 5.3e-6). A per-rank mean averaged over the ranks (naive DDP on a token-mean
    loss) would be off by ~10% of the gradient on this rollout (its halves hold 140 and 112 tokens)."""
    init, rollout, d = saved
    cases = [CASES[k] | {"optim": {"lr": LR} | CASES[k].get("optim", {})} for k in CASES]
    ranks = run_data_parallel(update_cases, 2, init, rollout, str(d / "two"), cases, timeout_s=60)
    start = update_once(None, init, rollout, str(d / "start"), {"optim": {"epochs": 1, "lr": 1e-30}})["params"]
    for name, groups, r0, r1 in zip(CASES, cases, *ranks, strict=True):
        one = update_once(None, init, rollout, str(d / "one"), groups)
        assert torch.equal(r0["params"], r1["params"]), f"{name}: the ranks fell out of sync"
        assert r0["metrics"] == r1["metrics"], f"{name}: the ranks' metrics differ"
        assert r0["metrics"]["actor/updates"] == one["metrics"]["actor/updates"] >= 3, name
        for key in ("loss/pg", "actor/grad_norm", "actor/ppo_kl"):
            assert r0["metrics"][key] == pytest.approx(one["metrics"][key], rel=1e-5, abs=1e-9), f"{name}: {key}"
        moved = one["params"] - start
        assert moved.abs().max() > 3 * LR, f"{name}: the update barely moved the weights"
        diff = r0["params"] - one["params"]
        assert diff.norm() <= 1e-3 * moved.norm(), f"{name}: 2 ranks' update is {diff.norm() / moved.norm():.1e} off"
        assert diff.abs().max() <= LR / 50, f"{name}: a parameter of 2 ranks is {diff.abs().max():.1e} off"


def test_a_rank_killed_mid_update_is_a_clear_error_in_the_survivor(saved):
    init, rollout, d = saved
    t0 = time.monotonic()
    with pytest.raises(DataParallelFailed) as e:
        run_data_parallel(update_once, 2, init, rollout, str(d / "killed"), {}, 2, timeout_s=20, deadline_s=120)
    msg = str(e.value)
    assert "rank 1: died (exit code -9)" in msg
    assert "rank 0: LearnerRankLost: data-parallel rank 0 of 2:" in msg and "checkpoint.resume=true" in msg
    assert time.monotonic() - t0 < 60  # start-up ~10 s; the survivor learns of the loss within timeout_s at most


def test_ranks_with_different_rollouts_refuse_to_update(saved):
    init, rollout, d = saved
    with pytest.raises(DataParallelFailed) as e:
        run_data_parallel(update_once, 2, init, [rollout, str(d / "other.pt")], str(d / "mixed"), {}, timeout_s=20)
    for rank in (0, 1):  # both refuse: neither waits for the other in a collective
        assert f"rank {rank}: ValueError: data-parallel update: ranks [1] hold another rollout" in str(e.value)


def test_shards_cover_a_minibatch_in_order_and_differ_by_at_most_one_row():
    for world in (1, 2, 3):
        for n in (0, 1, 2, 7, 16):
            parts = [DataParallel(k, world).shard(torch.arange(n)) for k in range(world)]
            assert torch.equal(torch.cat(parts), torch.arange(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1
