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
