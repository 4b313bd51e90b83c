"""Gymnasium env for one MuJoCo arm task, with chunked stepping that renders once per chunk."""

from __future__ import annotations

from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from sims.mujoco.sim import ArmSim
from sims.mujoco.task import ArmTask, Expert, NarrowedRNG
from vla_rl.envs import ACTION_DIM, CAMERAS
from vla_rl.envs.contract import ChunkStepping
from vla_rl.registry import resolve_entry_point

STATE_DIM = 8


class ArmEnv(ChunkStepping, gym.Env):
    """One arm + one task.

    Observation: ``{"agentview": uint8 (H, W, 3), "wrist": uint8 (H, W, 3), "state": float32 (8,)}``.
    Action: float32 (7,) in [-1, 1] (see `vla_rl.envs`). Reward: 1.0 on the step the task succeeds,
    else 0. ``terminated`` on success, ``truncated`` at ``max_episode_steps``.

    Args:
        task: an `ArmTask`, or its entry point ``"package.module:Class"`` (how the env registry names it).
        max_episode_steps: control steps before the episode is truncated.
        spread: the centred fraction of each initial-state range that is sampled (1: the full ranges).
        image_size, cameras: what is rendered. task_id: the registered id, for records.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task: ArmTask | str, max_episode_steps: int = 100, spread: float = 1.0, image_size: int = 128,
                 cameras: tuple[str, ...] = CAMERAS, task_id: str = "", render_mode: str | None = "rgb_array") -> None:
        unknown = set(cameras) - set(CAMERAS)
        if unknown:
            raise ValueError(f"unknown cameras {sorted(unknown)}; valid: {list(CAMERAS)}")
        if not 0.0 < spread <= 1.0:
            raise ValueError(f"spread must be in (0, 1], got {spread}")
        if isinstance(task, str):
            task = resolve_entry_point(task)()
        self.task = task
        self.spread = spread
        self.task_id = task_id
        self.cameras = tuple(cameras)
        self.image_size = image_size
        self.render_mode = render_mode
        self.sim = ArmSim(task.objects_xml(), task.assets_xml(), image_size=image_size)
        img = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(
            {**{c: img for c in self.cameras},
             "state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)}
        )
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.max_steps = max_episode_steps
        self.instructions = task.instructions
        self.instruction = ""
        self.elapsed = 0
        self.seed_used: int | None = None
        self._expert: Expert | None = None
        self._done = False

    # ---- Gymnasium API ----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.seed_used = seed
        rng = self.np_random
        self.sim.reset_arm()
        self.task.initialize(self.sim, rng if self.spread == 1.0 else NarrowedRNG(rng, self.spread))
        self.sim.forward()
        self.instruction = self.instructions[int(rng.integers(len(self.instructions)))]
        self.elapsed = 0
        self._done = False
        self._expert = None
        return self._obs(), {"instruction": self.instruction, "success": False}

    def _control(self, action: np.ndarray) -> bool:
        """One 20 Hz control step of ``action`` (7,); True when the task is solved after it."""
        self.sim.apply_action(action)
        return self.task.is_success(self.sim)

    def step_joint_targets(self, q_target: np.ndarray, opening: float, render: bool = True):
        """One control step commanded in joint space, as a ros2_control joint_trajectory controller is: the arm's
        joint targets ``q_target`` (7,) rad and each finger's ``opening`` (m), bypassing the end-effector
        controller (`ArmSim.drive_joints`). Episode bookkeeping and returns as `step`."""
        q = np.asarray(q_target, dtype=np.float64)
        if q.shape != (7,) or not np.all(np.isfinite(q)) or not np.isfinite(opening):
            raise ValueError(f"joint targets must be 7 finite numbers and a finite opening, got {q_target}, {opening}")
        return self._advance([partial(self._joint_control, q, float(opening))], render)

    def _joint_control(self, q: np.ndarray, opening: float) -> bool:
        self.sim.drive_joints(q, opening)
        return self.task.is_success(self.sim)

    def render(self) -> np.ndarray:
        return self.sim.render(self.cameras[0])

    def close(self) -> None:
        self.sim.close()

    # ---- extras -----------------------------------------------------------------------------
    def expert_action(self) -> np.ndarray:
        """The scripted expert's next action (7,) from privileged state."""
        if self._expert is None:
            self._expert = self.task.expert()
        return self._expert.act(self.sim).astype(np.float32)

    def render_into(self, out: dict[str, np.ndarray]) -> None:
        """Render every camera into preallocated uint8 (H, W, 3) arrays, keyed by camera."""
        for c in self.cameras:
            self.sim.render(c, out=out[c])

    def proprio(self) -> np.ndarray:
        """float32 (8,): the observation's state (TCP position, axis-angle, finger openings), without rendering."""
        return self.sim.proprio()

    def get_state(self) -> np.ndarray:
        return self.sim.get_state()

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {c: self.sim.render(c) for c in self.cameras}
        obs["state"] = self.sim.proprio()
        return obs
