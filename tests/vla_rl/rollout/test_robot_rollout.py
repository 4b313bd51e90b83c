"""The robot rollout loop: groups, masks, lost episodes, and pipelined == sequential."""

import numpy as np
import pytest
import torch

from sims.vector import SubprocVectorEnv
from vla_rl.policies.tokenizer import build_tokenizer
from vla_rl.policies.vla.configuration_vla import LMConfig, VisionConfig, VLAConfig
from vla_rl.policies.vla.modeling_vla import VLAPolicy
from vla_rl.policies.vla.processor_vla import NormStats
from vla_rl.rollout.robot import collect_rollouts
from vla_rl.trainers.sft import all_instructions


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    cfg = VLAConfig(vision=VisionConfig(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2,
                                        intermediate_size=64),
                    lm=LMConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64), chunk_size=4)
    tok = build_tokenizer(all_instructions(), vocab_size=300)
    return VLAPolicy(cfg, len(tok), NormStats(-np.ones(7), np.ones(7)), NormStats(-np.ones(8), np.ones(8)),
                     tokenizer=tok)


@pytest.fixture(scope="module")
def env():
    e = SubprocVectorEnv("mujoco/Reach-v1", num_envs=4, num_workers=2, env_kwargs={"image_size": 32,
                                                                                   "cameras": ("agentview",)})
    yield e
    e.close()


def per_traj(r):
    out = []
    for t in range(len(r.group)):
        s = r.traj == t
        out.append((int(r.group[t]), bool(r.success[t]), int(r.steps[t]), r.tokens[s].tolist(),
                    r.token_mask[s].sum().item()))
    return sorted(out, key=lambda x: (x[0], x[3]))


def test_groups_masks_and_counts(policy, env):
    r = collect_rollouts(env, policy, [0, 1, 2], group_size=2, temperature=1.0,
                         generator=torch.Generator().manual_seed(0), task="mujoco/Reach-v1", group_offset=10)
    assert r.group.tolist() == [10, 10, 11, 11, 12, 12] and r.seeds == [0, 0, 1, 1, 2, 2]
    assert not r.lost.any() and r.num_samples == r.traj.numel() == r.images.shape[0]
    for t in range(6):  # executed steps == unmasked tokens / 7, every trajectory ends by success or limit
        s = r.traj == t
        assert r.token_mask[s].sum().item() == r.steps[t].item() * 7
        assert r.success[t] or r.steps[t].item() == 60
    assert (r.old_logp <= 0).all() and r.images.dtype == torch.uint8
    assert r.env_steps == int(r.steps.sum())


def test_pipelined_equals_sequential_when_greedy(policy, env):
    a = collect_rollouts(env, policy, [3, 4], group_size=2, temperature=1.0, greedy=True)
    b = collect_rollouts(env, policy, [3, 4], group_size=2, temperature=1.0, greedy=True, pipelined=True)
    assert per_traj(a) == per_traj(b)


def test_pipelined_needs_two_workers(policy):
    one = SubprocVectorEnv("mujoco/Reach-v1", num_envs=2, num_workers=1, env_kwargs={"image_size": 32})
    try:
        with pytest.raises(ValueError, match="at least 2 workers"):
            collect_rollouts(one, policy, [0], group_size=2, temperature=1.0, pipelined=True)
    finally:
        one.close()


def test_async_step_refuses_overlapping_calls(env):
    env.reset(seed=0)
    acts = np.zeros((4, 2, 7), np.float32)
    h = env.step_chunk_async(acts, np.array([True, True, False, False]))
    with pytest.raises(RuntimeError, match="in flight"):
        env.step_chunk_async(acts, np.array([True, False, False, False]))
    with pytest.raises(RuntimeError, match="in flight"):
        env.step_chunk(acts)
    _, _, _, _, info = env.step_wait(h)
    assert info["steps"].tolist() == [2, 2, 0, 0]


def test_tokens_of_constant_dims_are_masked_out(policy, env):
    """Dims the demos held constant decode to that constant from any bin: their tokens get no credit."""
    from vla_rl.policies.vla.processor_vla import ActionTokenizer

    q01, q99 = -np.ones(7), np.ones(7)
    q01[3:6] = q99[3:6] = 0.0  # roll, pitch, yaw constant
    q01[6] = q99[6] = -1.0  # the gripper constant too, but binary dims always act
    tok = ActionTokenizer(NormStats(q01, q99), policy.action_offset, 256, (6,))
    assert tok.acting_dims().tolist() == [True] * 3 + [False] * 3 + [True]
    saved, policy.action_tokenizer = policy.action_tokenizer, tok
    try:
        r = collect_rollouts(env, policy, [0], group_size=2, temperature=1.0,
                             generator=torch.Generator().manual_seed(0))
    finally:
        policy.action_tokenizer = saved
    per_dim = r.token_mask.view(r.num_samples, -1, 7).sum((0, 1))
    assert (per_dim[3:6] == 0).all() and (per_dim[[0, 1, 2, 6]] == int(r.steps.sum())).all()
