"""Sharded learner ranks (FSDP2 on 2 gloo ranks, `vla_rl.distributed.fsdp`): each rank holds half of the weights and
of AdamW's moments, and the updates end where one process's end on the same global batches (full fine-tuning, LoRA,
a KL reference with a minibatch that leaves rank 1 without rows, bfloat16 with activation checkpointing); the state
goes to full state dicts and back without changing the run; fsdp with one rank is refused at load."""

from __future__ import annotations

import pytest
import torch

from bench.data_parallel_bench import synthetic_rollout
from tests.vla_rl.distributed.fsdp_ranks import cases, flat, one_process
from vla_rl.distributed.learner import run_data_parallel

LR = 1e-3
LORA = {"model": {"lora": {"rank": 4}}}
BF16 = {"model": {"dtype": "bfloat16", "activation_checkpointing": True, "lora": {"rank": 4}}}
KL_TAIL = {"loss": {"name": "clip_cov", "agg_mode": "seq-mean-token-mean", "kl_coef": 0.1,
                    "kwargs": {"clip_cov_ratio": 0.05, "clip_cov_lb": -10.0, "clip_cov_ub": 10.0}},
           "optim": {"lr": LR, "minibatch_size": 31}}  # 32 samples: a 1-row tail minibatch, rank 1 forwards a row


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_vla):
    """Every case of this module on one pair of ranks (one start-up): {name: (rank results, the run's arguments)}."""
    d = tmp_path_factory.mktemp("fsdp")
    tiny_vla.save_pretrained(d / "init")
    rollouts = []
    for seed in (0, 1):
        rollouts.append(str(d / f"rollout{seed}.pt"))
        torch.save(synthetic_rollout(tiny_vla, trajectories=8, steps=4, seed=seed), rollouts[-1])
    lr, clipped = {"optim": {"lr": LR}}, {"optim": {"lr": LR, "grad_clip": 0.2}}  # norms ~0.4: the clip acts
    spec = {
        "full": dict(groups=clipped, rollouts=rollouts),
        "full, resumed before update 2": dict(groups=clipped, rollouts=rollouts, resume_before=1),
        "lora, resumed before update 1": dict(groups=lr | LORA, rollouts=rollouts, resume_before=0),
        "kl reference, empty shard": dict(groups=KL_TAIL, rollouts=rollouts[:1]),
        "bf16": dict(groups=lr | BF16, rollouts=rollouts),
        "bf16 replicated": dict(groups=lr | BF16, rollouts=rollouts, sharding="replicate"),
    }
    out = run_data_parallel(cases, 2, str(d / "init"), str(d / "ranks"), list(spec.values()), timeout_s=60,
                            deadline_s=300)
    return {name: ([r[k] for r in out], run) for k, (name, run) in enumerate(spec.items())}, str(d / "init"), d


def close(a: dict, b: dict, start: dict, what: str) -> None:
    """test_learner.py's tolerance on the trainable parameters: within 1e-3 of the update's norm, each within lr / 50
    (float32 summation order of the gradient reduction and the norm, amplified by Adam on near-zero coordinates;
    measured <= 9e-6)."""
    names = a["names"]
    assert names == b["names"]
    moved = flat(b["state"], names) - flat(start, names)
    assert moved.abs().max() > 3 * LR, f"{what}: the update barely moved the weights"
    diff = flat(a["state"], names) - flat(b["state"], names)
    assert diff.norm() <= 1e-3 * moved.norm(), f"{what}: {diff.norm() / moved.norm():.1e} of the update off"
    assert diff.abs().max() <= LR / 50, f"{what}: a parameter {diff.abs().max():.1e} off"
    frozen = [k for k in b["state"] if k not in names]  # frozen weights, buffers: untouched, exactly
    assert all(torch.equal(a["state"][k], b["state"][k]) for k in frozen), f"{what}: a frozen tensor changed"


@pytest.mark.parametrize("name", ["full", "lora, resumed before update 1", "kl reference, empty shard"])
def test_sharded_ranks_update_like_one_process(runs, name):
    spec, init, d = runs
    (r0, r1), run = spec[name]
    one = one_process(init, run["rollouts"], str(d / "one" / name), run["groups"])
    start = one_process(init, [], str(d / "start"), run["groups"])["state"]
    assert r0["units"] == 3  # the LM's decoder layer, the vision tower's block, the root
    assert r0["weights_here"] == pytest.approx(0.5, abs=0.02) and r1["weights_here"] == pytest.approx(0.5, abs=0.02)
    assert r0["moments_here"] == pytest.approx(0.5, abs=0.05), "AdamW's moments are not sharded"
    assert r0["metrics"] == r1["metrics"], f"{name}: the ranks' metrics differ"
    for m, m1 in zip(r0["metrics"], one["metrics"], strict=True):
        assert m["actor/updates"] == m1["actor/updates"] >= 3, name
        for key in ("loss/pg", "actor/grad_norm", "actor/ppo_kl", "actor/entropy"):
            assert m[key] == pytest.approx(m1[key], rel=1e-5, abs=1e-9), f"{name}: {key}"
    close(r0, one, start, name)
    opt, opt1 = r0["opt"], one["opt"]
    assert sorted(opt["state"]) == sorted(opt1["state"]), f"{name}: another set of parameters has Adam moments"
    for i, s1 in opt1["state"].items():
        assert torch.equal(opt["state"][i]["step"], s1["step"])
        for k in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(opt["state"][i][k], s1[k], rtol=1e-3, atol=1e-7, msg=f"{name}: {k} of {i}")
    assert [g["lr"] for g in opt["param_groups"]] == [g["lr"] for g in opt1["param_groups"]]


def test_the_state_through_full_state_dicts_leaves_the_run_unchanged(runs):
    """Gathered to full state dicts (as the driver holds them) and set on fresh sharded trainers before the second
    update: the same parameters and moments, bitwise, as the run that kept its shards."""
    spec, _, _ = runs
    (kept, _), _ = spec["full"]
    (resumed, _), _ = spec["full, resumed before update 2"]
    assert kept["metrics"] == resumed["metrics"]
    assert kept["state"].keys() == resumed["state"].keys()
    assert all(torch.equal(kept["state"][k], resumed["state"][k]) for k in kept["state"])
    for i, s in kept["opt"]["state"].items():
        assert all(torch.equal(v, resumed["opt"]["state"][i][k]) for k, v in s.items())


def test_bfloat16_with_activation_checkpointing_shards_like_the_replicated_ranks(runs):
    """LoRA on bfloat16 frozen weights (gathered as stored) with recomputed activations: the replicated ranks forward
    the same rows in the same dtype, so only the gradient reduction and norm's float32 order differ."""
    spec, init, d = runs
    (sharded, _), _ = spec["bf16"]
    (replicated, _), _ = spec["bf16 replicated"]
    start = one_process(init, [], str(d / "start-bf16"), BF16 | {"optim": {"lr": LR}})["state"]
    assert start["lm.model.layers.0.self_attn.q_proj.base_layer.weight"].dtype == torch.bfloat16
    for m, m1 in zip(sharded["metrics"], replicated["metrics"], strict=True):
        assert m["actor/updates"] == m1["actor/updates"] >= 3
        assert m["actor/grad_norm"] == pytest.approx(m1["actor/grad_norm"], rel=1e-5)
    close(sharded, replicated, start, "bf16")


def test_fsdp_needs_two_learner_ranks():
    from vla_rl.config import ConfigError, load_config
    from vla_rl.trainers.grpo import GRPOConfig

    base = ["init=x", "tasks=[mujoco/Reach-v1]", "distributed.learner_sharding=fsdp"]
    with pytest.raises(ConfigError, match="learner_sharding=fsdp shards the policy over the learner ranks, but "
                                          "learner_ranks=1: set distributed.learner_ranks to 2 or more"):
        load_config(GRPOConfig, overrides=base)
    with pytest.raises(ConfigError, match="learner_sharding"):
        load_config(GRPOConfig, overrides=[*base[:2], "distributed.learner_sharding=zero3"])


def test_the_units_are_the_blocks_of_the_outermost_stacks():
    from torch import nn

    from vla_rl.distributed.fsdp import block_lists

    class Tower(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2)) for _ in range(3))
            self.blocks = nn.Sequential(*[nn.LayerNorm(2) for _ in range(4)])  # timm's stack
            self.proj = nn.Sequential(nn.Linear(2, 2), nn.GELU(), nn.Linear(2, 2))  # mixed: not a stack
            self.empty = nn.ModuleList([nn.GELU(), nn.ReLU()])  # no parameters

    tower = Tower()
    assert block_lists(nn.ModuleDict({"a": tower})) == [tower.layers, tower.blocks]  # not the Sequentials inside

