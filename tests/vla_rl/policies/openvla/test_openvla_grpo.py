"""A synthetic OpenVLA-OFT folder trains in our GRPO trainer as it is (the trainer picks the policy class from the
folder's config.json): two iterations on a MuJoCo task, parameters moved, the run's checkpoint an OpenVLA policy
that exports back to OpenVLA's layout."""

from __future__ import annotations

import json
import math

import torch

from tests.vla_rl.policies.openvla.synthetic import write_folder
from vla_rl.policies.factory import robot_policy_class
from vla_rl.policies.openvla.modeling_openvla import OpenVLAPolicy

TASK = "mujoco/Reach-v1"


def test_grpo_two_iterations_from_an_openvla_folder(tmp_path):
    from vla_rl.trainers.grpo import GRPOConfig, GRPOTrainer

    init = write_folder(tmp_path / "init", oft=True, datasets=("mujoco_reach",), num_images=2)
    assert robot_policy_class(init) is OpenVLAPolicy
    cfg = GRPOConfig.model_validate(dict(
        tasks=[TASK], init=str(init), out=str(tmp_path / "run"), iterations=2, threads=1, device="cpu",
        env={"num_envs": 4, "num_workers": 1}, sampling={"seeds_per_iter": 2, "group_size": 2, "temperature": 1.6},
        optim={"epochs": 1, "minibatch_size": 16, "lr": 1e-3}, eval={"every": 2, "episodes": 2},
        checkpoint={"every": 2}, rollout={"n_action_steps": 4}))
    t = GRPOTrainer(cfg)
    try:
        assert isinstance(t.policy, OpenVLAPolicy) and t.policy.config.n_action_steps == 4
        before = {k: v.clone() for k, v in t.policy.state_dict().items()}
        for _ in range(cfg.iterations):
            r = t.rollout()
            assert r.tokens.shape[1] == 56 and torch.isfinite(r.old_logp).all()
            assert r.state is not None and r.images.shape[1:] == (2, 3, 28, 28)  # OFT: two cameras, proprio
            # the unexecuted steps of each chunk and nothing else are masked (the gripper dim acts)
            assert r.token_mask[:, 28:].sum() == 0 and (r.token_mask[:, :28] == 1).all()
            r.success[:] = torch.arange(len(r.success)) % 2 == 0  # mixed outcomes: non-zero advantages
            t.step(r, 0.0)
        t.finish()
    finally:
        t.close()
    moved = [k for k, v in t.policy.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("language_model.") for k in moved) and any(k.startswith("projector.") for k in moved)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["actor/updates"] > 0 and math.isfinite(r["loss/pg"]) for r in rows if "loss/pg" in r] == [True, True]
    last = OpenVLAPolicy.from_pretrained(tmp_path / "run" / "last")
    assert last.config.variant == "oft" and robot_policy_class(tmp_path / "run" / "last") is OpenVLAPolicy


def test_an_openvla_folder_trains_with_lora_in_bfloat16_and_saves_its_own_layout(tmp_path):
    """The 7B recipe's memory keys (LoRA on the Llama projections, frozen weights in bfloat16, activation
    checkpointing) on the synthetic OFT folder: only adapters learn, and last/ is a plain OpenVLA folder again."""
    from vla_rl.policies.adapters import adapter_state
    from vla_rl.trainers.grpo import GRPOConfig, GRPOTrainer

    init = write_folder(tmp_path / "init", oft=True, datasets=("mujoco_reach",), num_images=2)
    cfg = GRPOConfig.model_validate(dict(
        tasks=[TASK], init=str(init), out=str(tmp_path / "run"), iterations=1, threads=1, device="cpu",
        model={"dtype": "bfloat16", "activation_checkpointing": True, "lora": {"rank": 4, "alpha": 8.0}},
        env={"num_envs": 4, "num_workers": 1}, sampling={"seeds_per_iter": 2, "group_size": 2, "temperature": 1.6},
        optim={"epochs": 1, "minibatch_size": 16, "lr": 1e-3}, eval={"episodes": 0}, rollout={"n_action_steps": 4}))
    t = GRPOTrainer(cfg)
    try:
        start = adapter_state(t.policy)
        assert start and all(".lora_" in n and n.startswith("language_model.") for n in start)
        r = t.rollout()
        r.success[:] = torch.arange(len(r.success)) % 2 == 0
        t.step(r, 0.0)
        t.finish()
        assert max(float((v - start[n]).abs().max()) for n, v in adapter_state(t.policy).items()) > 1e-4
    finally:
        t.close()
    last = OpenVLAPolicy.from_pretrained(tmp_path / "run" / "last")
    assert not any("lora_" in k for k in last.state_dict())
