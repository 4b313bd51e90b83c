"""What a robot task gives the MuJoCo backend: objects, initial states, success, and an expert.

Tasks live in `tasks/robot`; they subclass `ArmTask`. An expert reads privileged state from the
`ArmSim` and returns one action (7,) per control step.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from sims.mujoco.sim import POS_SCALE, ROT_SCALE, ArmSim, rotation_error


class Expert(abc.ABC):
    """A scripted policy for one episode (it may keep phase state)."""

    @abc.abstractmethod
    def act(self, sim: ArmSim) -> np.ndarray:
        """float32 (7,) action in [-1, 1]."""


class ArmTask(abc.ABC):
    """A robot task on the MuJoCo arm: subclass it in `tasks.robot` and register an env spec for it (entry point
    `sims.mujoco.env.ArmEnv`, ``task="tasks.robot.module:Class"``, a step limit) in `vla_rl.envs`."""

    #: instruction templates; one is chosen per episode from the seed
    instructions: tuple[str, ...] = ()

    def objects_xml(self) -> str:
        """``<body>`` elements for the worldbody."""
        return ""

    def assets_xml(self) -> str:
        return ""

    @abc.abstractmethod
    def initialize(self, sim: ArmSim, rng: np.random.Generator) -> None:
        """Randomise the initial state (the arm is already at home); called before ``mj_forward``."""

    @abc.abstractmethod
    def is_success(self, sim: ArmSim) -> bool:
        """The success predicate on the current state."""

    @abc.abstractmethod
    def expert(self) -> Expert:
        """A fresh scripted expert for one episode."""


class NarrowedRNG:
    """A view of a numpy ``Generator`` whose ``uniform(low, high)`` draws from the centred fraction ``spread``
    of each range: ``mid +- spread * (high - low) / 2``. Every other method is the generator's own, and each
    draw consumes the generator exactly as the full-range draw would, so a seed maps to the same sequence of
    unit draws at every spread."""

    def __init__(self, rng: np.random.Generator, spread: float) -> None:
        if not 0.0 < spread <= 1.0:
            raise ValueError(f"spread must be in (0, 1], got {spread}")
        self._rng = rng
        self.spread = spread

    def uniform(self, low: Any = 0.0, high: Any = 1.0, size: Any = None) -> Any:
        low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        mid, half = (low + high) / 2, self.spread * (high - low) / 2
        out = self._rng.uniform(mid - half, mid + half, size)
        return float(out) if np.ndim(out) == 0 else out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rng, name)


def flip(rng: np.random.Generator | NarrowedRNG, p: float = 0.5) -> bool:
    """A binary choice away from a task's nominal option: True with probability ``p`` at the full range and
    ``p * spread`` under a `NarrowedRNG`, so a narrow variant mostly keeps the nominal layout, as its continuous
    draws keep near their ranges' centres. One unit draw ``u`` either way (True when ``u < p * spread``): at the
    full range a seed makes the same choice as ``rng.random() < p``."""
    return bool(rng.random() < p * getattr(rng, "spread", 1.0))


def move_action(sim: ArmSim, target: np.ndarray, gripper: float, gain: float = 1.0,
                yaw: float | None = None) -> np.ndarray:
    """Action (7,) driving the TCP toward ``target`` (3,) with the gripper pointing down.

    ``gripper`` is -1 (open) .. +1 (closed); ``yaw`` (rad, about world z) turns the fingers.
    """
    a = np.zeros(7, dtype=np.float32)
    a[:3] = np.clip(gain * (target - sim.tcp_pos()) / POS_SCALE, -1.0, 1.0)
    if yaw is not None:  # steer the controller's orientation target, which it tracks
        c, s = np.cos(yaw), np.sin(yaw)
        down = np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])
        a[3:6] = np.clip(rotation_error(down, sim.target_rot) / ROT_SCALE, -1.0, 1.0)
    a[6] = gripper
    return a
