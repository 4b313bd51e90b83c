"""The vector-env contract every simulator backend implements (Gymnasium's API, batched).

Observations are a dict of batched numpy arrays:

* one ``uint8`` image array ``(N, H, W, 3)`` per camera, keyed by the camera name
  (``"agentview"``, ``"wrist"``),
* ``"state"``: ``float32 (N, D)`` proprioception (end-effector position, axis-angle, finger positions).

``info`` always carries ``"instruction"`` (``list[str]``, one per env), ``"success"`` (``bool (N,)``),
``"lost"`` (``bool (N,)``: the env's worker crashed or hung; that episode is void and must be
excluded, never scored as a failure) and ``"steps"`` (``int (N,)``: control steps executed by the call).

Actions are ``float32 (N, 7)`` for ``step`` and ``(N, T, 7)`` for ``step_chunk``: end-effector
delta position (3), delta axis-angle rotation (3), gripper (1; -1 open, +1 closed), each in [-1, 1]
(values outside are clipped; NaN or inf is refused with ``ValueError``).

Episodes do not auto-reset: an env that terminated or truncated keeps returning its last
observation until the next ``reset``; pass ``active`` to step only the envs still running.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol, runtime_checkable

import numpy as np

ACTION_DIM = 7
CAMERAS = ("agentview", "wrist")  # the camera names a backend may render, in this order

Obs = dict[str, np.ndarray]
StepResult = tuple[Obs, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


@runtime_checkable
class VectorEnv(Protocol):
    """N environments stepped together; see the module docstring for shapes."""

    num_envs: int
    camera_names: tuple[str, ...]

    def reset(self, seed: int | list[int] | None = None) -> tuple[Obs, dict[str, Any]]: ...

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult: ...

    def step_chunk(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult: ...

    def close(self) -> None: ...


def check_actions(actions: np.ndarray, leading: tuple[int, ...]) -> np.ndarray:
    """Validate a batch of actions: shape ``leading + (7,)``, finite; returns float32 clipped to [-1, 1].

    Raises:
        ValueError: naming the expected shape, or the first env index holding NaN/inf.
    """
    a = np.asarray(actions, dtype=np.float32)
    expected = (*leading, ACTION_DIM)
    if a.shape != expected:
        raise ValueError(f"actions have shape {a.shape}, expected {expected} (batch..., {ACTION_DIM} dims)")
    bad = ~np.isfinite(a)
    if bad.any():
        idx = np.argwhere(bad)[0]
        raise ValueError(f"actions contain NaN or inf (first at index {tuple(int(i) for i in idx)}); "
                         "refusing to step: fix the policy output")
    return np.clip(a, -1.0, 1.0)


class ChunkStepping:
    """The episode bookkeeping every single env shares: control steps counted in ``elapsed`` up to ``max_steps``,
    the episode done at success or the limit (later steps are no-ops until ``reset`` clears ``_done``), one render
    at the end of a chunk. A backend implements ``_control(action) -> bool`` (one control step of an action (7,)
    already checked; True when the task is solved after it) and ``_obs()``; ``reset`` sets ``elapsed = 0`` and
    ``_done = False``."""

    max_steps: int
    elapsed: int
    instruction: str
    _done: bool

    def _control(self, action: np.ndarray) -> bool:
        raise NotImplementedError

    def _obs(self) -> Obs:
        raise NotImplementedError

    def step(self, action: np.ndarray) -> tuple[Obs | None, float, bool, bool, dict[str, Any]]:
        """One control step of ``action`` (7,); the returns of `step_chunk`."""
        return self.step_chunk(np.asarray(action)[None])

    def step_chunk(self, actions: np.ndarray, render: bool = True) -> tuple[Obs | None, float, bool, bool,
                                                                              dict[str, Any]]:
        """Run T control steps of ``actions`` (T, 7), stopping early at success or the step limit, and render once
        at the end (``render=False``: obs is None). Returns obs, reward (1.0 on success), terminated (success),
        truncated (the limit without success), info (``success``, ``instruction``, ``steps`` executed)."""
        actions = check_actions(actions, (len(np.asarray(actions)),))
        return self._advance([partial(self._control, a) for a in actions], render)

    def _advance(self, controls: Sequence[Callable[[], bool]], render: bool) -> tuple[Obs | None, float, bool, bool,
                                                                                      dict[str, Any]]:
        """Run each control (one step; True on success) until success or the step limit: `step_chunk`'s returns."""
        success, steps = False, 0
        for control in controls:
            if self._done:
                break
            success = bool(control())
            self.elapsed += 1
            steps += 1
            if success or self.elapsed >= self.max_steps:
                self._done = True
        truncated = self.elapsed >= self.max_steps and not success
        obs = self._obs() if render else None
        info = {"success": success, "instruction": self.instruction, "steps": steps}
        return obs, float(success), success, truncated, info
