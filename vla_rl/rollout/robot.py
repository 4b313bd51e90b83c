"""The robot rollout loop: G rollouts per initial state, action chunks decoded in one batched forward.

Every policy call on an env is one *sample* (context = images + instruction + proprio, response = the
K = chunk x 7 action tokens); a trajectory is the samples of one episode and carries its outcome.
Envs that finished are dropped from the forward batch. Episodes lost to a crashed worker are marked
and must be excluded from the update, never scored as failures.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from vla_rl.envs import VectorEnv
from vla_rl.rollout.base import Rollout, per_sample, per_trajectory
from vla_rl.rollout.episodes import Wave, run_waves


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
    episodes_rerun: int = 0  # episodes played again after a worker fault lost them (`run_waves`)

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


class _Sampler:
    """`collect_rollouts`' acting and recording, over `run_waves`: `act` infers the live envs' chunks (temperature,
    correlated noise, central mass, anchors), `on_chunk` records each chunk's samples once its steps are known."""

    def __init__(self, policy, temperature: float, generator: torch.Generator | None, greedy: bool,
                 noise: QuantileNoise | None, sample_mass: float, anchor_plan: np.ndarray) -> None:
        self.policy, self.temperature, self.generator, self.greedy = policy, temperature, generator, greedy
        self.noise, self.sample_mass, self.anchor_plan = noise, sample_mass, anchor_plan
        self.proc = policy.processor()
        self.acting = torch.from_numpy(np.tile(policy.action_tokenizer.acting_dims(), policy.config.chunk_size)).float()
        self.sent: deque = deque()  # (images, batch, out) of each chunk in flight, oldest first
        self.buf: dict[str, list] = {k: [] for k in ("images", "ids", "amask", "state", "tokens", "logp", "ent",
                                                     "tmask", "traj")}
        self.policy_s = 0.0

    def on_reset(self, wave: Wave) -> None:
        n_env = len(wave.active)
        if wave.rerun:  # these episodes were lost: their samples so far are void
            self.discard(wave.episodes)
        self.traj_ids = np.full(n_env, -1)  # padding envs never act
        self.traj_ids[: len(wave.episodes)] = wave.episodes
        self.anchor = np.zeros(n_env, bool)  # acts by the median
        self.anchor[: len(wave.episodes)] = self.anchor_plan[wave.episodes]
        if self.noise is not None:
            self.noise.reset()

    def discard(self, episodes: list[int]) -> None:
        """Drop the recorded samples of trajectories ``episodes``."""
        for c, traj in enumerate(self.buf["traj"]):
            keep = ~torch.isin(traj, torch.as_tensor(episodes))
            for vals in self.buf.values():
                if vals:
                    vals[c] = vals[c][keep]

    def act(self, obs, instructions: list[str], active: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(active)
        tp = time.perf_counter()
        images = self.proc.images({c: obs[c][rows] for c in self.proc.cameras})
        state = obs["state"][rows] if self.proc.state_stats is not None else None
        batch = self.proc.batch(images, [instructions[i] for i in rows], state)
        with torch.no_grad():
            out = self.policy.act(batch, temperature=self.temperature, greedy=self.greedy, generator=self.generator,
                                  quantiles=self._quantiles(rows))
        self.policy_s += time.perf_counter() - tp
        self.sent.append((images, batch, out))
        actions = np.zeros((len(active), out.actions.shape[1], self.policy.config.action_dim), np.float32)
        actions[rows] = out.actions
        return actions

    def _quantiles(self, rows: np.ndarray) -> torch.Tensor | None:
        """The sampling quantiles of the tokens of ``rows`` (None: plain sampling, or greedy)."""
        cfg = self.policy.config
        q = None if self.noise is None else self.noise.next(rows, cfg.chunk_size, cfg.n_action_steps)
        if (self.sample_mass < 1.0 or self.anchor[rows].any()) and not self.greedy:
            u = torch.rand(len(rows), cfg.num_action_tokens, generator=self.generator) if q is None else q
            q = central_quantiles(u, self.sample_mass) if self.sample_mass < 1.0 else u
            q[torch.from_numpy(self.anchor[rows])] = 0.5
        return q

    def on_chunk(self, wave: Wave, rows: np.ndarray, info: dict) -> None:
        images, batch, out = self.sent.popleft()
        cfg = self.policy.config
        executed = torch.from_numpy(info["steps"][rows])
        tmask = (torch.arange(cfg.num_action_tokens)[None] // cfg.action_dim < executed[:, None]).float() * self.acting
        for key, val in (("images", images), ("ids", batch.input_ids), ("amask", batch.attention_mask),
                         ("tokens", out.tokens), ("logp", out.logprobs), ("ent", out.entropy),
                         ("tmask", tmask), ("traj", torch.from_numpy(self.traj_ids[rows]))):
            self.buf[key].append(val)
        if batch.state is not None:
            self.buf["state"].append(batch.state)

    def rollout(self, records: list[dict], groups: list[int], task: str, wall_s: float) -> RobotRollout:
        buf, cat = self.buf, torch.cat
        return RobotRollout(
            cat(buf["images"]), cat(buf["ids"]), cat(buf["amask"]), cat(buf["state"]) if buf["state"] else None,
            cat(buf["tokens"]), cat(buf["logp"]).float(), cat(buf["ent"]).float(), cat(buf["tmask"]), cat(buf["traj"]),
            torch.tensor(groups), torch.tensor([r["success"] for r in records]),
            torch.tensor([r["lost"] for r in records]), torch.tensor([r["steps"] for r in records]),
            [r["seed"] for r in records], [task] * len(records), torch.from_numpy(self.anchor_plan), wall_s,
            self.policy_s, sum(r["reruns"] for r in records))


def collect_rollouts(env: VectorEnv, policy, seeds: list[int], group_size: int, temperature: float,
                     generator: torch.Generator | None = None, task: str = "", group_offset: int = 0,
                     greedy: bool = False, pipelined: bool = False, noise_correlation: float = 0.0,
                     sample_mass: float = 1.0, anchors: int = 0) -> RobotRollout:
    """Run ``group_size`` episodes from each seed (same seed G times: one GRPO group), ``env.num_envs``
    at a time (`run_waves`). Group ids are ``group_offset + index of the seed``.

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
    t0 = time.perf_counter()
    noise = None
    if noise_correlation > 0 and not greedy:
        noise = QuantileNoise(env.num_envs, policy.config.action_dim, noise_correlation, generator)
    anchor_plan = np.tile(np.arange(group_size) < anchors, len(seeds))  # per episode: acts by the median
    sampler = _Sampler(policy, temperature, generator, greedy, noise, sample_mass, anchor_plan)
    was_training = policy.training
    policy.eval()
    try:
        records = run_waves(env, sampler, [s for s in seeds for _ in range(group_size)], sampler, pipelined)
    finally:
        policy.train(was_training)
    groups = [group_offset + i for i in range(len(seeds)) for _ in range(group_size)]
    return sampler.rollout(records, groups, task, time.perf_counter() - t0)
