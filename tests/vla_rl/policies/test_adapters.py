"""LoRA adapters, merged checkpoints, frozen weights in bfloat16 and activation checkpointing on the tiny VLA
(`vla_rl.policies.adapters`), each against the plain policy."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vla_rl.policies import adapters
from vla_rl.policies.vla.modeling_vla import VLAPolicy

LM = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def batch_of(policy, n: int = 3, seed: int = 0):
    proc, rng = policy.processor(), np.random.default_rng(seed)
    size = policy.config.vision.image_size
    images = proc.images({c: rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8) for c in proc.cameras})
    state = rng.standard_normal((n, policy.config.state_dim)).astype("float32") if proc.state_stats else None
    tokens = torch.from_numpy(rng.integers(0, policy.config.n_bins, (n, policy.config.num_action_tokens)))
    return proc.batch(images, ["reach the target"] * n, state), tokens


def test_lora_starts_as_the_policy_trains_only_adapters_and_saves_merged(tiny_vla, tmp_path):
    policy = copy.deepcopy(tiny_vla)
    batch, tokens = batch_of(policy)
    before = policy.logprobs(batch, tokens)[0]
    trainable = adapters.add_lora(policy, rank=4, alpha=8.0, dropout=0.0, target_modules=LM,
                                  modules_to_save=["action_head"] if hasattr(policy, "action_head") else [])
    names = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n or n.startswith("action_head") for n in names)
    assert len(trainable) == len(names) and adapters.has_lora(policy)
    torch.testing.assert_close(policy.logprobs(batch, tokens)[0], before, rtol=0, atol=0)  # B = 0: unchanged
    with torch.no_grad():  # what an update does: the adapters move
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    moved = policy.logprobs(batch, tokens)[0]
    assert (moved - before).abs().max() > 1e-3
    keys = set(tiny_vla.state_dict())
    with adapters.merged(policy):
        assert set(policy.state_dict()) == keys  # the policy's own keys, no adapters
        policy.save_pretrained(tmp_path / "merged")
    assert adapters.has_lora(policy)  # put back after the save
    torch.testing.assert_close(policy.logprobs(batch, tokens)[0], moved, rtol=0, atol=0)
    plain = VLAPolicy.from_pretrained(tmp_path / "merged")  # loads without peft's layers
    torch.testing.assert_close(plain.logprobs(batch, tokens)[0], moved, rtol=1e-5, atol=1e-5)
    state = adapters.adapter_state(policy)
    other = copy.deepcopy(tiny_vla)
    adapters.add_lora(other, 4, 8.0, 0.0, LM, [])
    adapters.load_adapter_state(other, state)
    torch.testing.assert_close(other.logprobs(batch, tokens)[0], moved, rtol=0, atol=0)


def test_target_modules_that_match_no_layer_are_refused(tiny_vla):
    with pytest.raises(ValueError, match=r"match no linear layer of this policy; its linear layers end with: .*q_proj"):
        adapters.add_lora(copy.deepcopy(tiny_vla), 4, 8.0, 0.0, ["qkv"], [])


def test_frozen_weights_in_bfloat16_act_close_to_float32_under_autocast(tiny_vla):
    policy = copy.deepcopy(tiny_vla)
    batch, tokens = batch_of(policy)
    ref = policy.logprobs(batch, tokens)[0]
    adapters.add_lora(policy, 4, 8.0, 0.0, LM, [])
    cast = adapters.store_frozen_in(policy, torch.bfloat16)
    assert cast == sum(p.numel() for p in policy.parameters() if not p.requires_grad)
    assert all(p.dtype == torch.float32 for p in policy.parameters() if p.requires_grad)  # adapters: fp32 master
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = policy.logprobs(batch, tokens)[0]
    assert low.dtype == torch.float32 and (low - ref).abs().max() < 0.1  # bfloat16 rounding, not another policy


def test_activation_checkpointing_gives_the_same_gradient(tiny_vla):
    grads = []
    for on in (False, True):
        policy = copy.deepcopy(tiny_vla).train()
        assert adapters.set_activation_checkpointing(policy, on) == 2  # the vision encoder and the LM
        batch, tokens = batch_of(policy)
        policy.logprobs(batch, tokens)[0].sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-6)
