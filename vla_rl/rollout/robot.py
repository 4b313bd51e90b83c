"""The robot rollout loop: G rollouts per initial state, action chunks decoded in one batched forward.

Every policy call on an env is one *sample* (context = images + instruction + proprio, response = the
K = chunk x 7 action tokens); a trajectory is the samples of one episode and carries its outcome.
Envs that finished are dropped from the forward batch. Episodes lost to a crashed worker are marked
and must be excluded from the update, never scored as failures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from vla_rl.envs import VectorEnv
from vla_rl.rollout.base import Rollout, per_sample, per_trajectory


@dataclass
class RobotRollout(Rollout):
    """One round of rollouts. S samples, N trajectories, K action tokens per sample.

    images uint8 (S, C, 3, H, W); input_ids, attention_mask int64 (S, L); state float32 (S, D) as the
    policy reads it (normalised; None without proprio); tokens int64 (S, K) in [0, n_bins); old_logp and
    entropy float32 (S, K); token_mask float32 (S, K) (1 for tokens of control steps that were executed, 0 for
    the tokens of dims that decode to a constant, `ActionTokenizer.acting_dims`: they carry no outcome credit);
    traj int64 (S,).
    Per trajectory: group int64 (N,), success / lost bool (N,), steps int64 (N,), seeds, task ids, anchor bool
    (N,) (it acted greedily, ``collect_rollouts(anchors=)``).
    """

    images: torch.Tensor = per_sample()
    input_ids: torch.Tensor = per_sample()
    attention_mask: torch.Tensor = per_sample()
    state: torch.Tensor | None = per_sample()
    tokens: torch.Tensor = per_sample()
    old_logp: torch.Tensor = per_sample()
    entropy: torch.Tensor = per_sample()
    token_mask: torch.Tensor = per_sample()
    traj: torch.Tensor = per_sample()
    group: torch.Tensor = per_trajectory()
    success: torch.Tensor = per_trajectory()
    lost: torch.Tensor = per_trajectory()
    steps: torch.Tensor = per_trajectory()
    seeds: list[int] = per_trajectory(list)
    tasks: list[str] = per_trajectory(list)
    anchor: torch.Tensor | None = per_trajectory(fill=lambda n: torch.zeros(n, dtype=torch.bool))
    wall_s: float = 0.0
    policy_s: float = 0.0

    @property
    def env_steps(self) -> int:
        return int(self.steps.sum())

    @property
    def reward(self) -> torch.Tensor:
        """float32 (N,): the outcome reward, 1 for success."""
        return self.success.float()

    def counts(self) -> dict[str, int]:
        """Work done, for the trainer's throughput metrics."""
        return {"env_steps": self.env_steps}

    def batch(self, idx: torch.Tensor):
        """The policy inputs (`VLABatch`) of samples ``idx``."""
        from vla_rl.policies.vla.modeling_vla import VLABatch

        return VLABatch(self.images[idx].float().div(127.5).sub(1.0), self.input_ids[idx], self.attention_mask[idx],
                        None if self.state is None else self.state[idx])


class QuantileNoise:
    """Temporally correlated sampling quantiles for the action tokens of ``n_env`` envs: coloured exploration
    noise (Eberhard et al. 2023, "Pink Noise Is All You Need", here an AR(1) process) for a categorical policy
    over ordered bins.

    Each env and action dimension carries a Gaussian state z, drawn afresh at `reset` and advanced once per
    control step, ``z <- rho z + sqrt(1 - rho^2) eps``; a token's quantile is Phi(z). Phi(z) is uniform at every
    step, so each token is still distributed as the policy says (rho = 0 is ordinary sampling); rho > 0
    correlates the draws over time, so an episode explores a consistent deviation from the policy's median
    (rho = 1: one quantile per dimension for the whole episode) instead of a random walk whose steps cancel.
    """

    def __init__(self, n_env: int, dim: int, rho: float, generator: torch.Generator | None = None) -> None:
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"noise correlation must be in [0, 1], got {rho}")
        self.rho, self.gen = rho, generator
        self.z = torch.zeros(n_env, dim)

    def reset(self, rows: np.ndarray | None = None) -> None:
        """Fresh states for ``rows`` (all envs if None)."""
        idx = torch.arange(len(self.z)) if rows is None else torch.as_tensor(rows)
        self.z[idx] = torch.randn(len(idx), self.z.shape[1], generator=self.gen)

    def next(self, rows: np.ndarray, steps: int, executed: int | None = None) -> torch.Tensor:
        """Quantiles float (len(rows), steps * dim) in (0, 1) for the next ``steps`` control steps of ``rows``,
        laid out like the action tokens (step-major). The state advances by the ``executed`` steps (None: all
        ``steps``): under a receding horizon the chunk's unexecuted steps are drawn but never happen, so the next
        chunk continues from the last executed one."""
        idx = torch.as_tensor(rows)
        z, out = self.z[idx], []
        for _ in range(steps):
            eps = torch.randn(z.shape, generator=self.gen)
            z = self.rho * z + (1.0 - self.rho**2) ** 0.5 * eps
            out.append(z)
        self.z[idx] = out[(executed or steps) - 1]
        return torch.special.ndtr(torch.cat(out, 1)).clamp(1e-6, 1 - 1e-6)


def central_quantiles(u: torch.Tensor, mass: float) -> torch.Tensor:
    """Uniform draws ``u`` float (rows, tokens) in (0, 1) -> quantiles uniform in [0.5 - mass / 2, 0.5 + mass / 2]:
    with inverse-CDF sampling (`VLAPolicy.act(quantiles=)`) each token is drawn from the central ``mass`` of its
    distribution over the ordered bins, renormalised, the ordinal counterpart of nucleus (top-p) sampling; mass 1
    is plain sampling, mass -> 0 the median. ``u`` may be `QuantileNoise`'s correlated draws."""
    return (0.5 + (u - 0.5) * mass).clamp(1e-6, 1 - 1e-6)


def env_halves(env: VectorEnv) -> list[np.ndarray]:
    """Two disjoint bool (N,) masks, each a whole set of workers, for pipelining (one half simulates
    while the policy infers for the other). Needs at least two workers."""
    workers = getattr(env, "num_workers", 1)
    if workers < 2 or not hasattr(env, "step_chunk_async"):
        raise ValueError("pipelined rollouts need a SubprocVectorEnv with at least 2 workers")
    first = np.array([env.worker_of(i) < workers // 2 for i in range(env.num_envs)])
    return [first, ~first]


def collect_rollouts(env: VectorEnv, policy, seeds: list[int], group_size: int, temperature: float,
                     generator: torch.Generator | None = None, task: str = "", group_offset: int = 0,
                     greedy: bool = False, pipelined: bool = False, noise_correlation: float = 0.0,
                     sample_mass: float = 1.0, anchors: int = 0) -> RobotRollout:
    """Run ``group_size`` episodes from each seed (same seed G times: one GRPO group), ``env.num_envs``
    at a time. Group ids are ``group_offset + index of the seed``.

    ``pipelined``: the envs are split into two halves of workers; while one half simulates its chunk,
    the policy infers for the other (`SubprocVectorEnv.step_chunk_async`). The samples are the same
    kind either way; only the interleaving (and so the sampling order of the generator) differs.

    ``noise_correlation`` > 0: tokens are drawn at AR(1)-correlated quantiles (`QuantileNoise`) instead of
    independently at every step.

    ``sample_mass`` < 1: each token is drawn from the central ``sample_mass`` of its distribution over the
    ordered bins (its quantile uniform in 0.5 +- sample_mass / 2, `central_quantiles`): the tails, where a
    one-demo policy spreads a quarter of its mass over far bins and the range's edges, are never sampled.

    ``anchors`` > 0: the first ``anchors`` rollouts of each group take every token at quantile 0.5 (the median
    of its tempered distribution: greedy acting with median point decoding) and the others sample, so each
    group scores the greedy behaviour against the sampled ones from the same initial state.
    """
    if not 0.0 < sample_mass <= 1.0:
        raise ValueError(f"sample_mass must be in (0, 1], got {sample_mass}")
    if not 0 <= anchors < group_size:
        raise ValueError(f"anchors must be in [0, group_size - 1] (a group needs a sampled rollout), got {anchors}")
    proc = policy.processor()
    k_tokens = policy.config.num_action_tokens
    dim = policy.config.action_dim
    acting = torch.from_numpy(np.tile(policy.action_tokenizer.acting_dims(), policy.config.chunk_size)).float()
    n_env = env.num_envs
    halves = env_halves(env) if pipelined else [np.ones(n_env, bool)]
    plan = [(s, group_offset + i) for i, s in enumerate(seeds) for _ in range(group_size)]
    anchor_plan = np.tile(np.arange(group_size) < anchors, len(seeds))  # (len(plan),) acts by the median
    noise = QuantileNoise(n_env, dim, noise_correlation, generator) if noise_correlation > 0 and not greedy else None
    buf: dict[str, list] = {k: [] for k in ("images", "ids", "amask", "state", "tokens", "logp", "ent", "tmask",
                                            "traj")}
    group, success, lost, steps = [], [], [], []
    t0, t_pol = time.perf_counter(), 0.0
    was_training = policy.training
    policy.eval()
    for start in range(0, len(plan), n_env):
        wave = plan[start : start + n_env]
        pad = [w[0] for w in wave] + [wave[-1][0]] * (n_env - len(wave))
        obs, info = env.reset(seed=pad)
        instructions = info["instruction"]
        active = np.arange(n_env) < len(wave)
        succ = np.zeros(n_env, bool)
        lst = np.zeros(n_env, bool)
        nsteps = np.zeros(n_env, np.int64)
        traj_ids = start + np.arange(n_env)
        anchor = np.zeros(n_env, bool)
        anchor[: len(wave)] = anchor_plan[start : start + len(wave)]
        if noise is not None:
            noise.reset()
        pending: list = [None] * len(halves)
        while active.any() or any(p is not None for p in pending):
            for h, half in enumerate(halves):
                if pending[h] is not None:  # collect this half's chunk, record its samples
                    handle, rows, images, batch, out = pending[h]
                    pending[h] = None
                    res_obs, _, term, trunc, sinfo = env.step_wait(handle) if pipelined else handle
                    for key in obs:
                        obs[key][rows] = res_obs[key][rows]
                    executed = torch.from_numpy(sinfo["steps"][rows])
                    tmask = (torch.arange(k_tokens)[None] // dim < executed[:, None]).float() * acting
                    for key, val in (("images", images), ("ids", batch.input_ids), ("amask", batch.attention_mask),
                                     ("tokens", out.tokens), ("logp", out.logprobs), ("ent", out.entropy),
                                     ("tmask", tmask), ("traj", torch.from_numpy(traj_ids[rows]))):
                        buf[key].append(val)
                    if batch.state is not None:
                        buf["state"].append(batch.state)
                    nsteps[rows] += sinfo["steps"][rows]
                    succ[rows] |= sinfo["success"][rows]
                    lst[rows] |= sinfo["lost"][rows]
                    done = term | trunc | sinfo["lost"]
                    active[rows] &= ~done[rows]
                rows = np.flatnonzero(active & half)
                if len(rows) == 0:
                    continue
                tp = time.perf_counter()  # infer for this half, then send its chunk
                images = proc.images({c: obs[c][rows] for c in proc.cameras})
                state = obs["state"][rows] if proc.state_stats is not None else None
                batch = proc.batch(images, [instructions[i] for i in rows], state)
                with torch.no_grad():
                    q = None if noise is None else noise.next(rows, policy.config.chunk_size,
                                                              policy.config.n_action_steps)
                    if (sample_mass < 1.0 or anchor[rows].any()) and not greedy:
                        u = torch.rand(len(rows), k_tokens, generator=generator) if q is None else q
                        q = central_quantiles(u, sample_mass) if sample_mass < 1.0 else u
                        q[torch.from_numpy(anchor[rows])] = 0.5
                    out = policy.act(batch, temperature=temperature, greedy=greedy, generator=generator, quantiles=q)
                t_pol += time.perf_counter() - tp
                actions = np.zeros((n_env, out.actions.shape[1], dim), np.float32)
                actions[rows] = out.actions
                mask = np.zeros(n_env, bool)
                mask[rows] = True
                handle = env.step_chunk_async(actions, mask) if pipelined else env.step_chunk(actions, mask)
                pending[h] = (handle, rows, images, batch, out)
        for i, (_, g) in enumerate(wave):
            group.append(g)
            success.append(bool(succ[i] and not lst[i]))
            lost.append(bool(lst[i]))
            steps.append(int(nsteps[i]))
    policy.train(was_training)
    cat = torch.cat
    return RobotRollout(
        cat(buf["images"]), cat(buf["ids"]), cat(buf["amask"]), cat(buf["state"]) if buf["state"] else None,
        cat(buf["tokens"]), cat(buf["logp"]).float(), cat(buf["ent"]).float(), cat(buf["tmask"]), cat(buf["traj"]),
        torch.tensor(group), torch.tensor(success), torch.tensor(lost), torch.tensor(steps),
        [p[0] for p in plan], [task] * len(plan), torch.from_numpy(anchor_plan), time.perf_counter() - t0, t_pol)
