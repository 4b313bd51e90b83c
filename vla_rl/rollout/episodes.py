"""The episode loop: the one place that steps a vector env through episodes (evaluation, GRPO rollouts, benches).

Episodes run in *waves* of ``env.num_envs``: reset every env from its seed (the last seed repeats to pad a short
wave), ask the policy for the live envs' action chunks, step them, drop the envs that finished, until none is
live. A `ChunkPolicy` chooses the actions; an optional `WaveObserver` sees each wave's reset and each chunk's
result (evaluation keeps video frames there, GRPO rollouts their per-sample tensors).

Episodes lost to a crashed or hung env worker (``info["lost"]``: the vector env replaced the worker) are played
again from their seed, in extra waves after the others, up to ``max_reruns`` times: a fault costs time, never an
outcome (issue 31). Their records count the re-runs; one still lost after the last is reported ``lost`` (void).

    records = run_waves(env, policy, seeds)  # one record per seed: seed, success, lost, steps, instruction, reruns
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from vla_rl.envs import Obs, StepResult, VectorEnv

logger = logging.getLogger(__name__)


class ChunkPolicy(Protocol):
    """What acts in an episode loop: batched observations in, one action chunk per env out."""

    def act(self, obs: Obs, instructions: list[str], active: np.ndarray | None = None) -> np.ndarray:
        """obs: images uint8 (N, H, W, 3) per camera and state float32 (N, D); instructions: N strings; active
        bool (N,) (None: all) -> action chunks float32 (N, T, 7). Rows where ``active`` is False are ignored (a
        policy may leave them zero and skip their inference)."""


class WaveObserver(Protocol):
    """Optional hooks of `run_waves`."""

    def on_reset(self, wave: Wave) -> None:
        """The wave's envs were just reset (``wave.obs`` is the first observation). In a re-run wave
        (``wave.rerun``) every episode of ``wave.episodes`` was lost before: what was kept of it is void."""

    def on_chunk(self, wave: Wave, rows: np.ndarray, info: dict[str, Any]) -> None:
        """The chunk sent to envs ``rows`` int (R,) came back; ``wave`` is updated with it (``wave.obs[rows]`` is
        the new observation) and ``info`` is the step's info (``info["steps"][rows]``: the steps executed).
        Chunks come back in the order they were sent (one `on_chunk` per `ChunkPolicy.act` call)."""


@dataclass
class Wave:
    """Episodes ``episodes`` (indices into `run_waves`' seeds) played side by side, env ``i`` playing ``seeds[i]``.

    obs: the latest observation of every env; instructions: N strings; active bool (N,): still playing (padding
    envs never are); steps int64 (N,); success, lost bool (N,): ever solved / lost to a crashed worker; rerun: these
    episodes were lost in an earlier wave and are played again.
    """

    episodes: list[int]
    seeds: list[int]
    obs: Obs
    instructions: list[str]
    active: np.ndarray
    steps: np.ndarray
    success: np.ndarray
    lost: np.ndarray
    rerun: bool = False

    @property
    def first(self) -> int:
        """The first episode's index (the episodes of a first wave are consecutive)."""
        return self.episodes[0]

    @classmethod
    def reset(cls, env: VectorEnv, seeds: list[int], episodes: list[int], rerun: bool = False) -> Wave:
        n = env.num_envs
        obs, info = env.reset(seed=seeds + [seeds[-1]] * (n - len(seeds)))
        lost = np.asarray(info.get("lost", np.zeros(n, bool)), bool).copy()
        return cls(episodes, seeds, obs, info["instruction"], (np.arange(n) < len(seeds)) & ~lost,
                   np.zeros(n, np.int64), np.zeros(n, bool), lost, rerun)

    def update(self, rows: np.ndarray, result: StepResult) -> None:
        """Take the step ``result`` of envs ``rows``; those that terminated, truncated or were lost stop."""
        obs, _, terminated, truncated, info = result
        for key in self.obs:
            self.obs[key][rows] = obs[key][rows]
        self.steps[rows] += info["steps"][rows]
        self.success[rows] |= info["success"][rows]
        self.lost[rows] |= info["lost"][rows]
        self.active[rows] &= ~(terminated | truncated | info["lost"])[rows]

    def records(self, reruns: int = 0) -> list[dict[str, Any]]:
        """One per episode: seed, success (a lost episode never succeeds), lost, steps, instruction, reruns (times
        the episode was played again after being lost)."""
        return [{"seed": seed, "success": bool(self.success[i] and not self.lost[i]), "lost": bool(self.lost[i]),
                 "steps": int(self.steps[i]), "instruction": self.instructions[i], "reruns": reruns}
                for i, seed in enumerate(self.seeds)]


def env_halves(env: VectorEnv) -> list[np.ndarray]:
    """Two disjoint bool (N,) masks, each a whole set of workers, for pipelining (one half simulates
    while the policy infers for the other). Needs at least two workers."""
    workers = getattr(env, "num_workers", 1)
    if workers < 2 or not hasattr(env, "step_chunk_async"):
        raise ValueError("pipelined rollouts need a vector env with step_chunk_async (SubprocVectorEnv, RayVectorEnv) "
                         "and at least 2 workers")
    first = np.array([env.worker_of(i) < workers // 2 for i in range(env.num_envs)])
    return [first, ~first]


def run_waves(env: VectorEnv, policy: ChunkPolicy, seeds: list[int], observer: WaveObserver | None = None,
              pipelined: bool = False, max_chunks: int | None = None, max_reruns: int = 2) -> list[dict[str, Any]]:
    """Play one episode per seed, ``env.num_envs`` at a time, until each terminates, truncates or is lost.

    ``pipelined``: the envs are split into two halves of workers (`env_halves`); while one half simulates its
    chunk (`step_chunk_async`), the policy infers for the other. Otherwise the policy acts for every live env,
    then they all step. ``max_chunks``: a wave stops after this many policy calls (its records count the steps
    played so far). ``max_reruns``: how many times an episode lost to a worker fault is played again (0: never).
    Returns `Wave.records` of every episode, in seed order.
    """
    halves = env_halves(env) if pipelined else None
    records: list[dict[str, Any]] = [{} for _ in seeds]
    todo = list(range(len(seeds)))
    for attempt in range(max_reruns + 1):
        for start in range(0, len(todo), env.num_envs):
            episodes = todo[start : start + env.num_envs]
            wave = Wave.reset(env, [seeds[e] for e in episodes], episodes, rerun=attempt > 0)
            _play(env, policy, wave, observer, halves, max_chunks)
            for e, rec in zip(episodes, wave.records(attempt), strict=True):
                records[e] = rec
        todo = [e for e in todo if records[e]["lost"]]
        if not todo:
            break
        if attempt < max_reruns:
            logger.warning("%d episode(s) lost to env worker faults (seeds %s); re-running them (re-run %d of at most "
                           "%d)", len(todo), [seeds[e] for e in todo][:8], attempt + 1, max_reruns)
    if todo:
        logger.warning("%d episode(s) still lost after %d re-run(s); they are void (excluded, never scored)",
                       len(todo), max_reruns)
    return records


def _play(env: VectorEnv, policy: ChunkPolicy, wave: Wave, observer: WaveObserver | None,
          halves: list[np.ndarray] | None, max_chunks: int | None) -> None:
    """Play ``wave`` (just reset) until none of its envs is live or ``max_chunks`` policy calls were made;
    ``halves``: pipelined over these two halves of the envs (None: not pipelined)."""
    n = env.num_envs
    pipelined = halves is not None
    halves = halves or [np.ones(n, bool)]
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
