"""The episode loop: the one place that steps a vector env through episodes (evaluation, GRPO rollouts, benches).

Episodes run in *waves* of ``env.num_envs``: reset every env from its seed (the last seed repeats to pad a short
wave), ask the policy for the live envs' action chunks, step them, drop the envs that finished, until none is
live. A `ChunkPolicy` chooses the actions; an optional `WaveObserver` sees each wave's reset and each chunk's
result (evaluation keeps video frames there, GRPO rollouts their per-sample tensors).

    records = run_waves(env, policy, seeds)  # one record per seed: seed, success, lost, steps, instruction
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from vla_rl.envs import Obs, StepResult, VectorEnv


class ChunkPolicy(Protocol):
    """What acts in an episode loop: batched observations in, one action chunk per env out."""

    def act(self, obs: Obs, instructions: list[str], active: np.ndarray | None = None) -> np.ndarray:
        """obs: images uint8 (N, H, W, 3) per camera and state float32 (N, D); instructions: N strings; active
        bool (N,) (None: all) -> action chunks float32 (N, T, 7). Rows where ``active`` is False are ignored (a
        policy may leave them zero and skip their inference)."""


class WaveObserver(Protocol):
    """Optional hooks of `run_waves`."""

    def on_reset(self, wave: Wave) -> None:
        """The wave's envs were just reset (``wave.obs`` is the first observation)."""

    def on_chunk(self, wave: Wave, rows: np.ndarray, info: dict[str, Any]) -> None:
        """The chunk sent to envs ``rows`` int (R,) came back; ``wave`` is updated with it (``wave.obs[rows]`` is
        the new observation) and ``info`` is the step's info (``info["steps"][rows]``: the steps executed).
        Chunks come back in the order they were sent (one `on_chunk` per `ChunkPolicy.act` call)."""


@dataclass
class Wave:
    """Episodes ``first .. first + len(seeds) - 1`` played side by side, env ``i`` playing ``seeds[i]``.

    obs: the latest observation of every env; instructions: N strings; active bool (N,): still playing (padding
    envs never are); steps int64 (N,); success, lost bool (N,): ever solved / lost to a crashed worker.
    """

    first: int
    seeds: list[int]
    obs: Obs
    instructions: list[str]
    active: np.ndarray
    steps: np.ndarray
    success: np.ndarray
    lost: np.ndarray

    @classmethod
    def reset(cls, env: VectorEnv, seeds: list[int], first: int) -> Wave:
        n = env.num_envs
        obs, info = env.reset(seed=seeds + [seeds[-1]] * (n - len(seeds)))
        return cls(first, seeds, obs, info["instruction"], np.arange(n) < len(seeds), np.zeros(n, np.int64),
                   np.zeros(n, bool), np.zeros(n, bool))

    def update(self, rows: np.ndarray, result: StepResult) -> None:
        """Take the step ``result`` of envs ``rows``; those that terminated, truncated or were lost stop."""
        obs, _, terminated, truncated, info = result
        for key in self.obs:
            self.obs[key][rows] = obs[key][rows]
        self.steps[rows] += info["steps"][rows]
        self.success[rows] |= info["success"][rows]
        self.lost[rows] |= info["lost"][rows]
        self.active[rows] &= ~(terminated | truncated | info["lost"])[rows]

    def records(self) -> list[dict[str, Any]]:
        """One per episode: seed, success (a lost episode never succeeds), lost, steps, instruction."""
        return [{"seed": seed, "success": bool(self.success[i] and not self.lost[i]), "lost": bool(self.lost[i]),
                 "steps": int(self.steps[i]), "instruction": self.instructions[i]} for i, seed in enumerate(self.seeds)]


def env_halves(env: VectorEnv) -> list[np.ndarray]:
    """Two disjoint bool (N,) masks, each a whole set of workers, for pipelining (one half simulates
    while the policy infers for the other). Needs at least two workers."""
    workers = getattr(env, "num_workers", 1)
    if workers < 2 or not hasattr(env, "step_chunk_async"):
        raise ValueError("pipelined rollouts need a SubprocVectorEnv with at least 2 workers")
    first = np.array([env.worker_of(i) < workers // 2 for i in range(env.num_envs)])
    return [first, ~first]


def run_waves(env: VectorEnv, policy: ChunkPolicy, seeds: list[int], observer: WaveObserver | None = None,
              pipelined: bool = False, max_chunks: int | None = None) -> list[dict[str, Any]]:
    """Play one episode per seed, ``env.num_envs`` at a time, until each terminates, truncates or is lost.

    ``pipelined``: the envs are split into two halves of workers (`env_halves`); while one half simulates its
    chunk (`step_chunk_async`), the policy infers for the other. Otherwise the policy acts for every live env,
    then they all step. ``max_chunks``: a wave stops after this many policy calls (its records count the steps
    played so far). Returns `Wave.records` of every episode, in seed order.
    """
    n = env.num_envs
    halves = env_halves(env) if pipelined else [np.ones(n, bool)]
    records: list[dict[str, Any]] = []
    for first in range(0, len(seeds), n):
        wave = Wave.reset(env, seeds[first : first + n], first)
        if observer is not None:
            observer.on_reset(wave)
        sent: list[Any] = [None] * len(halves)  # per half: (rows, its step in flight or done)
        chunks = 0
        while (wave.active.any() and chunks != max_chunks) or any(s is not None for s in sent):
            for h, half in enumerate(halves):
                if sent[h] is not None:  # this half's chunk: take its result
                    rows, step = sent[h]
                    sent[h] = None
                    result = env.step_wait(step) if pipelined else step
                    wave.update(rows, result)
                    if observer is not None:
                        observer.on_chunk(wave, rows, result[4])
                rows = np.flatnonzero(wave.active & half)
                if len(rows) == 0 or chunks == max_chunks:
                    continue
                mask = np.zeros(n, bool)
                mask[rows] = True
                actions = policy.act(wave.obs, wave.instructions, mask)  # then send this half's chunk
                chunks += 1
                sent[h] = (rows, env.step_chunk_async(actions, mask) if pipelined else env.step_chunk(actions, mask))
        records += wave.records()
    return records
