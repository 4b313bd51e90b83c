"""The GRPO trainer's ``model`` keys on the tiny VLA: LoRA adapters with frozen weights in bfloat16 and activation
checkpointing learn, save plain checkpoints and resume exactly; bad combinations are refused at load."""

from __future__ import annotations

import pytest
import torch

from tests.vla_rl.trainers.test_grpo import cfg_for
from vla_rl.policies.adapters import adapter_state
from vla_rl.policies.vla.modeling_vla import VLAPolicy
from vla_rl.trainers.grpo import GRPOTrainer

LORA = {"lora": {"rank": 4, "alpha": 8.0}}


@pytest.fixture(scope="module")
def init_ckpt(tmp_path_factory, tiny_vla):
    path = tmp_path_factory.mktemp("init") / "ckpt"
    tiny_vla.save_pretrained(path)
    return path


def iterate(t: GRPOTrainer, until: int) -> None:
    """Iterations up to ``until``, every group's outcomes forced mixed (the micro policy never succeeds, and equal
    outcomes would leave nothing to learn)."""
    while t.iteration < until:
        r = t.rollout()
        r.success[:] = torch.arange(len(r.success)) % 2 == 0
        t.step(r, 0.0)


def test_lora_in_bfloat16_with_checkpointing_learns_adapters_only_and_saves_a_plain_policy(init_ckpt, tmp_path):
    cfg = cfg_for(init_ckpt, tmp_path / "lora", eval={"episodes": 0},
                  model=LORA | {"dtype": "bfloat16", "activation_checkpointing": True})
    t = GRPOTrainer(cfg)
    try:
        frozen = {n: p.detach().clone() for n, p in t.policy.named_parameters() if not p.requires_grad}
        start = adapter_state(t.policy)
        assert {p.dtype for n, p in t.policy.named_parameters() if n in frozen} == {torch.bfloat16}
        assert all(v.dtype == torch.float32 for v in start.values()) and all("lora_" in n for n in start)
        iterate(t, 2)
        t.finish()
        for n, p in t.policy.named_parameters():  # the frozen weights never move
            if n in frozen:
                assert torch.equal(p, frozen[n]), n
        moved = max(float((v - start[n]).abs().max()) for n, v in adapter_state(t.policy).items())
        assert moved > 1e-4
        plain = VLAPolicy.from_pretrained(tmp_path / "lora" / "last")  # merged: loads without peft
        r = t.rollout()
        idx = torch.arange(min(8, r.num_samples))
        with t.autocast():
            want = t.policy.logprobs(r.batch(idx), r.tokens[idx])[0]
            got = plain.logprobs(r.batch(idx), r.tokens[idx])[0]
        assert (got - want).abs().max() < 0.05  # the same policy, up to bfloat16 rounding of the merged weights
    finally:
        t.close()


def test_a_resumed_lora_run_ends_as_the_uninterrupted_one(init_ckpt, tmp_path):
    full = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "full", eval={"episodes": 0}, model=LORA))
    try:
        iterate(full, 2)
        want = adapter_state(full.policy)
    finally:
        full.close()
    part = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "part", eval={"episodes": 0}, model=LORA))
    try:
        iterate(part, 1)
    finally:
        part.close()
    assert (tmp_path / "part" / "state" / "adapters.pt").is_file()
    resumed = GRPOTrainer(cfg_for(init_ckpt, tmp_path / "part", eval={"episodes": 0}, model=LORA,
                                  checkpoint={"resume": True}))
    try:
        assert resumed.iteration == 1
        iterate(resumed, 2)
        got = adapter_state(resumed.policy)
    finally:
        resumed.close()
    assert got.keys() == want.keys()
    for n in want:
        torch.testing.assert_close(got[n], want[n], rtol=0, atol=0)


def test_lora_with_a_weight_average_is_refused_at_load(init_ckpt, tmp_path):
    with pytest.raises(ValueError, match="optim.ema averages every weight, model.lora trains adapters only"):
        cfg_for(init_ckpt, tmp_path / "x", model=LORA, optim={"ema": 0.9})
