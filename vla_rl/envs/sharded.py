"""What the vector envs that split their envs into contiguous slices over workers share (`sims.vector`'s worker
processes, `vla_rl.distributed.ray_env`'s Ray actors): seeds, the envs to step, chunk validation, ``call`` routed to
the workers, observation copies.

A subclass sets ``num_envs``, ``_slices`` (worker -> ``(lo, hi)``), ``_lost`` / ``_needs_reset`` ``bool (N,)``,
``_images`` (camera -> ``uint8 (N, H, W, 3)``), ``_state`` ``float32 (N, D)``, ``_instructions`` (N strings), and
implements ``_roundtrip(msgs)`` (worker -> ``(method, args)`` in, worker -> reply out; failed workers absent),
``_reset_message(seeds)`` / ``_take_reset(w, reply)`` (a worker's reset request, and storing its reply) and
``close()``.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from vla_rl.envs.contract import Obs, check_actions


class ShardedVectorEnv:
    """The worker-independent half of a sliced vector env (see the module docstring)."""

    num_envs: int
    _slices: list[tuple[int, int]]
    _lost: np.ndarray
    _needs_reset: np.ndarray
    _images: dict[str, np.ndarray]
    _state: np.ndarray
    _instructions: list[str]

    def _roundtrip(self, msgs: dict[int, tuple[str, Any]]) -> dict[int, Any]:
        raise NotImplementedError

    def _reset_message(self, seeds: list[int | None]) -> tuple[str, Any]:
        raise NotImplementedError

    def _take_reset(self, w: int, reply: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def reset(self, seed: int | list[int] | None = None) -> tuple[Obs, dict[str, Any]]:
        """Reset every env. ``seed``: int ``s`` gives env ``i`` seed ``s + i``; a list gives one per env.

        Returns ``(obs, info)``; obs images ``uint8 (N, H, W, 3)`` per camera, ``state float32 (N, D)``;
        info ``instruction`` (list[str]), ``success``/``lost`` ``bool (N,)``, ``steps`` ``int64 (N,)`` (0).
        A worker that fails during reset is restarted and the reset retried once on it; envs still failing are
        reported lost.
        """
        seeds = self._seeds(seed)
        todo = list(range(len(self._slices)))
        lost = np.zeros(self.num_envs, bool)
        for attempt in range(2):
            replies = self._roundtrip({w: self._reset_message(seeds[slice(*self._slices[w])]) for w in todo})
            for w, reply in replies.items():
                self._take_reset(w, reply)
            todo = [w for w in todo if w not in replies]
            if not todo:
                break
            if attempt == 1:
                for w in todo:
                    lost[slice(*self._slices[w])] = True
        self._lost[:] = lost
        self._needs_reset[:] = lost
        info = {"instruction": list(self._instructions), "success": np.zeros(self.num_envs, bool),
                "lost": lost.copy(), "steps": np.zeros(self.num_envs, np.int64)}
        return self._copy_obs(), info

    def worker_of(self, env_index: int) -> int:
        """The worker holding env ``env_index``."""
        for w, (lo, hi) in enumerate(self._slices):
            if lo <= env_index < hi:
                return w
        raise IndexError(f"env index {env_index} out of range [0, {self.num_envs})")

    def call(self, name: str, *args: Any, indices: list[int] | None = None, **kwargs: Any) -> list[Any]:
        """``getattr(env, name)(*args, **kwargs)`` (or the attribute itself) on each env in ``indices`` (default
        all), in order. Envs whose worker failed during the call give ``None`` (and become lost)."""
        idx = list(range(self.num_envs)) if indices is None else [int(i) for i in indices]
        by_worker: dict[int, list[int]] = {}
        for i in idx:
            by_worker.setdefault(self.worker_of(i), []).append(i)
        msgs = {w: ("call", (name, args, kwargs, [i - self._slices[w][0] for i in envs]))
                for w, envs in by_worker.items()}
        replies = self._roundtrip(msgs)
        out: dict[int, Any] = {}
        for w, envs in by_worker.items():
            out.update(zip(envs, replies.get(w, [None] * len(envs)), strict=True))
        return [out[i] for i in idx]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _seeds(self, seed: int | list[int] | None) -> list[int | None]:
        return env_seeds(seed, self.num_envs)

    def _chunk(self, actions: np.ndarray) -> np.ndarray:
        """``actions (N, T, 7)`` validated (`check_actions`)."""
        a = np.asarray(actions)
        if a.ndim != 3:
            raise ValueError(f"actions have shape {a.shape}, expected (N={self.num_envs}, T, 7)")
        return check_actions(a, (self.num_envs, a.shape[1]))

    def _runnable(self, active: np.ndarray | None) -> np.ndarray:
        """bool (N,): envs to step (active, reset, not lost)."""
        act = np.ones(self.num_envs, bool) if active is None else np.asarray(active, bool)
        if act.shape != (self.num_envs,):
            raise ValueError(f"active has shape {act.shape}, expected ({self.num_envs},)")
        if (act & self._needs_reset & ~self._lost).any():
            raise RuntimeError("call reset() before stepping")
        return act & ~self._lost

    def _copy_obs(self, rows: np.ndarray | None = None) -> Obs:
        """The latest observation of every env, copied; with ``rows`` (bool (N,)) only those rows (others zero)."""
        if rows is None:
            obs = {cam: img.copy() for cam, img in self._images.items()}
            obs["state"] = self._state.copy()
            return obs
        obs = {cam: np.zeros_like(img) for cam, img in self._images.items()}
        obs["state"] = np.zeros_like(self._state)
        for cam, img in self._images.items():
            obs[cam][rows] = img[rows]
        obs["state"][rows] = self._state[rows]
        return obs


def env_seeds(seed: int | list[int] | None, n: int) -> list[int | None]:
    """One seed per env of a vector env of ``n``: None for all, ``s + i`` from an int ``s``, or the list itself.

    Raises:
        ValueError: a list of another length than ``n``.
    """
    if seed is None:
        return [None] * n
    if isinstance(seed, int | np.integer):
        return [int(seed) + i for i in range(n)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} envs")
    return seeds
