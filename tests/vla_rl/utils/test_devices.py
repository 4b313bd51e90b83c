"""`resolve_device`: what a run's ``device`` key means here, and clear refusals; a CPU generator sampling tokens for a
policy on another device (`multinomial`); the GRPO trainer on a GPU (skipped without one)."""

from __future__ import annotations

import pytest
import torch

from vla_rl.policies.base import multinomial
from vla_rl.utils.devices import resolve_device


def test_auto_and_cpu_resolve_and_bad_names_are_refused():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one_is_a_clear_error():
    with pytest.raises(ValueError, match="torch sees no GPU here.*device=cpu or device=auto"):
        resolve_device("cuda")


def test_the_config_refuses_an_unknown_device_at_load(tmp_path):
    from pydantic import ValidationError

    from vla_rl.trainers.grpo import GRPOConfig

    with pytest.raises(ValidationError, match="device"):
        GRPOConfig.model_validate({"tasks": ["mujoco/Reach-v1"], "init": str(tmp_path), "device": "tpu"})


def test_multinomial_follows_the_generator_whatever_the_device():
    probs = torch.softmax(torch.randn(6, 11, generator=torch.Generator().manual_seed(1)), -1)
    a = multinomial(probs, torch.Generator().manual_seed(3))
    b = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    if torch.cuda.is_available():  # a GPU policy's probabilities, the trainer's CPU generator: the same draws
        c = multinomial(probs.cuda(), torch.Generator().manual_seed(3))
        assert c.is_cuda and torch.equal(c.cpu(), a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (none here): the trainer on device=cuda")
def test_grpo_on_a_gpu_acts_and_learns_there(tiny_vla, tmp_path):
    """One iteration with the policy on the GPU: rollouts come back on the CPU, the parameters move and stay on
    the GPU, and the first rollout's tokens equal the CPU trainer's up to kernels' rounding (most of them)."""
    from vla_rl.trainers.grpo import GRPOConfig, GRPOTrainer

    tiny_vla.save_pretrained(tmp_path / "init")
    runs = {}
    for device in ("cpu", "cuda"):
        cfg = GRPOConfig.model_validate(dict(
            tasks=["mujoco/Reach-v1"], init=str(tmp_path / "init"), out=str(tmp_path / device), iterations=1,
            device=device, env={"num_envs": 4, "num_workers": 1}, eval={"episodes": 0},
            sampling={"seeds_per_iter": 2, "group_size": 2}, optim={"epochs": 1, "minibatch_size": 16}))
        t = GRPOTrainer(cfg)
        try:
            before = {k: v.detach().clone() for k, v in t.policy.state_dict().items()}
            r = t.rollout()
            r.success[:] = torch.arange(len(r.success)) % 2 == 0
            t.step(r, 0.0)
            assert r.tokens.device.type == "cpu" and next(t.policy.parameters()).device.type == device
            moved = max(float((v.float() - before[k].float()).abs().max()) for k, v in t.policy.state_dict().items())
            runs[device] = (r.tokens, moved)
        finally:
            t.close()
    assert runs["cuda"][1] > 0
    n = min(len(runs["cpu"][0]), len(runs["cuda"][0]))
    assert (runs["cpu"][0][:n] == runs["cuda"][0][:n]).float().mean() > 0.5
