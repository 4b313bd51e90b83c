"""The robot rollout loop: groups, masks, lost episodes, and pipelined == sequential."""

import copy

import numpy as np
import pytest
import torch

from vla_rl.envs import EnvConfig, make_vector_env
from vla_rl.policies.vla.processor_vla import NormStats
from vla_rl.rollout.robot import QuantileNoise, central_quantiles, collect_rollouts


@pytest.fixture(scope="module")
def policy(tiny_vla):
    return tiny_vla


@pytest.fixture(scope="module")
def env():
    e = make_vector_env(EnvConfig(num_envs=4, num_workers=2, image_size=32, cameras=("agentview",)), "mujoco/Reach-v1")
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
    one = make_vector_env(EnvConfig(num_envs=2, num_workers=1, image_size=32), "mujoco/Reach-v1")
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


def test_quantile_noise_is_uniform_and_ar1():
    """Quantiles are uniform at every step; consecutive Gaussian states correlate by rho; rho = 1 holds one
    quantile per dimension for the episode; reset redraws it."""
    noise = QuantileNoise(2000, 3, 0.8, torch.Generator().manual_seed(0))
    noise.reset()
    rows = np.arange(2000)
    q = noise.next(rows, 2).view(2000, 2, 3)  # step-major layout: 2 steps x 3 dims
    assert ((q > 0) & (q < 1)).all()
    hist = torch.histc(q[:, 1, 0], bins=5, min=0, max=1) / 2000
    assert (hist - 0.2).abs().max() < 0.04
    z = torch.special.ndtri(q)
    r = np.corrcoef(z[:, 0, 0].numpy(), z[:, 1, 0].numpy())[0, 1]
    assert abs(r - 0.8) < 0.05
    assert abs(np.corrcoef(z[:, 0, 0].numpy(), z[:, 0, 1].numpy())[0, 1]) < 0.07  # dims independent
    fixed = QuantileNoise(4, 7, 1.0, torch.Generator().manual_seed(0))
    fixed.reset()
    a, b = fixed.next(np.arange(4), 2), fixed.next(np.array([1, 3]), 1)
    torch.testing.assert_close(a[:, :7], a[:, 7:])
    torch.testing.assert_close(b, a[[1, 3], :7])
    fixed.reset(np.array([0]))
    c = fixed.next(np.arange(4), 1)
    assert not torch.allclose(c[0], a[0, :7]) and torch.allclose(c[1:], a[1:, :7])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        QuantileNoise(1, 7, 1.5)
    head = QuantileNoise(3, 2, 0.8, torch.Generator().manual_seed(0))  # receding horizon: 1 of 4 steps executed
    head.reset()
    drawn = head.next(np.arange(3), 4, executed=1)
    torch.testing.assert_close(head.z, torch.special.ndtri(drawn[:, :2]), atol=1e-4, rtol=0)


def test_correlated_rollouts_are_seeded_and_differ_from_independent_ones(policy, env):
    kw = dict(group_size=2, temperature=1.0, task="mujoco/Reach-v1")
    a = collect_rollouts(env, policy, [0, 1], generator=torch.Generator().manual_seed(0), noise_correlation=1.0, **kw)
    b = collect_rollouts(env, policy, [0, 1], generator=torch.Generator().manual_seed(0), noise_correlation=1.0, **kw)
    c = collect_rollouts(env, policy, [0, 1], generator=torch.Generator().manual_seed(0), **kw)
    assert per_traj(a) == per_traj(b) and per_traj(a) != per_traj(c)
    lp, _ = policy.logprobs(a.batch(torch.arange(a.num_samples)), a.tokens, 1.0)
    torch.testing.assert_close(lp, a.old_logp, atol=1e-5, rtol=0)


def test_central_quantiles_sample_the_central_mass():
    """Inverse-CDF sampling at central quantiles draws each bin with the probability of its overlap with the
    central band of the CDF, renormalised (a slow reference over a hand-built heavy-tailed distribution);
    bins wholly in the tails are never drawn; mass 1 is plain sampling."""
    from vla_rl.policies.vla.modeling_vla import _sample

    p = torch.tensor([0.2, 0.05, 0.1, 0.3, 0.1, 0.05, 0.2])  # a quarter of the mass at each edge bin
    logits = p.log()[None, None].expand(1, 20000, 7)
    for mass in (1.0, 0.5, 0.3):
        q = central_quantiles(torch.rand(1, 20000, generator=torch.Generator().manual_seed(1)), mass)
        tokens, logp, _ = _sample(logits, 1.0, False, None, quantiles=q)
        freq = torch.bincount(tokens.flatten(), minlength=7).float() / 20000
        lo, hi, cdf, ref = 0.5 - mass / 2, 0.5 + mass / 2, 0.0, []
        for pi in p.tolist():  # overlap of [cdf, cdf + p_i] with [lo, hi], over the band's width
            ref.append(max(0.0, min(cdf + pi, hi) - max(cdf, lo)) / mass)
            cdf += pi
        assert (freq - torch.tensor(ref)).abs().max() < 0.015, (mass, freq, ref)
        torch.testing.assert_close(logp, p.log()[tokens])  # log-probs stay those of the full distribution
    assert ref[0] == ref[-1] == 0.0  # mass 0.3: the edge bins are never drawn
    given = central_quantiles(torch.tensor([[0.0, 1.0, 0.5]]), 0.5)  # e.g. `QuantileNoise`'s draws
    torch.testing.assert_close(given, torch.tensor([[0.25, 0.75, 0.5]]))
    with pytest.raises(ValueError, match="sample_mass"):
        collect_rollouts(None, None, [0], group_size=2, temperature=1.0, sample_mass=0.0)


def test_sample_mass_draws_near_the_median(policy, env):
    """A rollout at sample_mass 0.2 only takes tokens within the central 20% of each token's distribution:
    its quantile under the policy (the CDF before and at the token) straddles the band [0.4, 0.6]."""
    r = collect_rollouts(env, policy, [0], group_size=2, temperature=1.0, generator=torch.Generator().manual_seed(0),
                         sample_mass=0.2)
    with torch.no_grad():
        p = policy.action_logits(r.batch(torch.arange(r.num_samples))).float().softmax(-1)
    bins = r.tokens[..., None]
    below = (p.cumsum(-1).gather(-1, bins) - p.gather(-1, bins)).squeeze(-1)
    at = p.cumsum(-1).gather(-1, bins).squeeze(-1)
    assert (below <= 0.6 + 1e-4).all() and (at >= 0.4 - 1e-4).all()


def test_anchor_rollouts_act_greedily_and_the_rest_sample(policy, env):
    """anchors=1: the first rollout of each group is exactly the greedy (median) episode of that seed; the
    others are sampled, so they differ from it."""
    gen = torch.Generator().manual_seed(0)
    r = collect_rollouts(env, policy, [5, 6], group_size=3, temperature=1.0, generator=gen, anchors=1)
    assert r.anchor.tolist() == [True, False, False, True, False, False]
    median = copy.deepcopy(policy)
    median.config = median.config.model_copy(update={"point_decoding": "median"})
    g = collect_rollouts(env, median, [5, 6], group_size=1, temperature=1.0, greedy=True)
    for t, gt in ((0, 0), (3, 1)):
        assert r.tokens[r.traj == t].tolist() == g.tokens[g.traj == gt].tolist()
        assert r.steps[t] == g.steps[gt]
    assert r.tokens[r.traj == 1].tolist() != r.tokens[r.traj == 0].tolist()
    with pytest.raises(ValueError, match="anchors"):
        collect_rollouts(env, policy, [5], group_size=2, temperature=1.0, anchors=2)


def test_receding_horizon_executes_the_chunk_head_and_credits_only_it(policy, env):
    """n_action_steps = 1 of a 4-step chunk: one policy call per env step, and only the first step's 7 tokens of
    each sample carry credit (the other three steps were decoded, never executed)."""
    full = collect_rollouts(env, policy, [0, 1], group_size=2, temperature=1.0, greedy=True)
    head = copy.deepcopy(policy)
    head.set_n_action_steps(1)
    r = collect_rollouts(env, head, [0, 1], group_size=2, temperature=1.0, greedy=True)
    assert r.num_samples == r.env_steps  # a sample per executed step
    assert r.num_samples > full.num_samples
    per_step = r.token_mask.view(r.num_samples, 4, 7).sum(0)
    assert (per_step[0] == r.num_samples).all() and (per_step[1:] == 0).all()


class KillWorkerBeforeStep:
    """``env`` whose worker 0 is SIGKILLed just before step_chunk call number ``at`` (1-based)."""

    def __init__(self, env, at: int) -> None:
        self.env, self.at, self.steps = env, at, 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step_chunk(self, actions, active=None):
        self.steps += 1
        if self.steps == self.at:
            import os
            import signal

            os.kill(self.env.worker_pids[0], signal.SIGKILL)
        return self.env.step_chunk(actions, active)


def test_a_worker_killed_mid_rollout_has_its_episodes_rerun(policy, env):
    """Greedy rollouts are a function of the seeds: with worker 0 killed mid-wave, its two episodes are played again
    and the rollout equals the undisturbed one (the lost attempt's samples are discarded, nothing is lost)."""
    clean = collect_rollouts(env, policy, [5, 6], group_size=2, temperature=1.0, greedy=True)
    restarts = env.restarts
    faulty = KillWorkerBeforeStep(env, at=3)
    r = collect_rollouts(faulty, policy, [5, 6], group_size=2, temperature=1.0, greedy=True)
    assert env.restarts == restarts + 1 and faulty.steps > 3
    assert r.episodes_rerun == 2 and clean.episodes_rerun == 0 and not r.lost.any()
    assert per_traj(r) == per_traj(clean)
    assert r.num_samples == clean.num_samples
