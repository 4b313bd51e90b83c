"""What the vector envs that split their envs into contiguous slices over workers share (`sims.vector`'s worker
processes, `vla_rl.distributed.ray_env`'s Ray actors): seeds, the envs to step, chunk validation, ``call`` routed to
the workers, observation copies.

A subclass sets ``num_envs``, ``_slices`` (worker -> ``(lo, hi)``), ``_lost`` / ``_needs_reset`` ``bool (N,)``,
``_images`` (camera -> ``uint8 (N, H, W, 3)``), ``_state`` ``float32 (N, D)``, and implements ``_roundtrip(msgs)``
(worker -> ``(method, args)`` in, worker -> reply out; failed workers absent) and ``close()``.
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

    def _roundtrip(self, msgs: dict[int, tuple[str, Any]]) -> dict[int, Any]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

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
        """One seed per env: None for all, ``s + i`` from an int ``s``, or the list itself."""
        if seed is None:
            return [None] * self.num_envs
        if isinstance(seed, int | np.integer):
            return [int(seed) + i for i in range(self.num_envs)]
        seeds = [int(s) for s in seed]
        if len(seeds) != self.num_envs:
            raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
        return seeds

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
