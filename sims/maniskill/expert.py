"""The motion-planning expert of a ManiSkill task, acting through our end-effector-delta actions.

ManiSkill ships a motion-planning solution per task (mplib screw / RRT motions under joint-position control). At the
first `act` of an episode, `PlannerExpert` has that solution run in a second, camera-less copy of the task reset to
the same seed, in a subprocess (`sims.maniskill.plan_worker`: mplib needs numpy 1), recording after every control
step the TCP pose it reached and the gripper command. `act` then returns
the end-effector delta that moves the real env's TCP to the plan's pose for the current step (closed loop on the
measured TCP, so small tracking errors do not accumulate), with the plan's gripper; past the plan's end it holds the
last pose.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sims.maniskill.env import ManiSkillEnv

logger = logging.getLogger(__name__)

POS_SCALE = 0.1  # m per unit action (pd_ee_delta_pose's pos bounds)
ROT_SCALE = 0.1  # rad per unit action (its rot bounds)


class PlannerExpert:
    """ManiSkill's motion planner for ``env``'s task, replayed as EE-delta actions (see the module docstring)."""

    def __init__(self, env: ManiSkillEnv) -> None:
        from sims.maniskill.env import TASKS
        from sims.maniskill.plan_worker import PlannerClient

        if TASKS[env.task].solution is None:
            raise ValueError(f"ManiSkill task {env.task!r} has no motion-planning solution; tasks with one: "
                             f"{sorted(k for k, v in TASKS.items() if v.solution)}")
        self.env = env
        self.client = PlannerClient()
        self.plan: list[tuple[np.ndarray, np.ndarray, float]] | None = None
        self.planned_ok = False

    def forget(self) -> None:
        """Drop the plan (a new episode began)."""
        self.plan = None

    def make_plan(self) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Run the task's solution from the env's seed; returns per control step (TCP pos, quat wxyz, gripper)."""
        self.planned_ok, path = self.client.plan(self.env.task, self.env.seed_used, self.env.reconfigure)
        if not self.planned_ok:
            logger.warning("ManiSkill %s: the motion planner found no plan for seed %s", self.env.task,
                           self.env.seed_used)
        if not path:  # nothing planned: hold the start pose, gripper open
            pos, quat = self.env.tcp_pose()
            return [(pos, quat, -1.0)]
        return [(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64), float(g)) for p, q, g in path]

    def act(self) -> np.ndarray:
        """The action (7,) in [-1, 1] toward the plan's TCP pose for the env's current step."""
        if self.plan is None:
            self.plan = self.make_plan()
        target_pos, target_quat, gripper = self.plan[min(self.env.elapsed, len(self.plan) - 1)]
        pos, quat = self.env.tcp_pose()
        return delta_action(pos, quat, target_pos, target_quat, gripper)

    def close(self) -> None:
        self.client.close()


def delta_action(pos: np.ndarray, quat: np.ndarray, target_pos: np.ndarray, target_quat: np.ndarray,
                 gripper: float) -> np.ndarray:
    """Our EE-delta action (7,) from TCP pose (``pos`` m, ``quat`` wxyz) to the target pose, clipped to [-1, 1]:
    translation in the root frame, rotation ``R_target R_current^T`` as axis-angle, both over the per-step scales."""
    from transforms3d.quaternions import qconjugate, qmult, quat2axangle

    dq = qmult(target_quat, qconjugate(quat))
    if dq[0] < 0:  # the short way round
        dq = -dq
    axis, angle = quat2axangle(dq)
    action = np.concatenate([(target_pos - pos) / POS_SCALE, axis * angle / ROT_SCALE, [gripper]])
    return np.clip(action, -1.0, 1.0).astype(np.float32)
