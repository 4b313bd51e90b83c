"""The motion-planning expert of a ManiSkill task, acting through our end-effector-delta actions.

ManiSkill ships a motion-planning solution per task (mplib screw / RRT motions under joint-position control). At the
first `act` of an episode, `PlannerExpert` has that solution run in a second, camera-less copy of the task reset to
the same seed, in a subprocess (`sims.maniskill.plan_worker`: mplib needs numpy 1), recording after every control
step the TCP pose it reached and the gripper command. `act` then returns
the end-effector delta that moves the real env's TCP to the plan's pose for the current step (closed loop on the
measured TCP, so small tracking errors do not accumulate), with the plan's gripper; past the plan's end it holds the
last pose.

Tasks whose solution carries an object to a tight goal (StackCube's cube onto the other, PegInsertionSide's peg
into its hole: `TaskInfo.held`) track, while the gripper is closed on that object, the object's planned pose instead
of the TCP's: the target TCP pose is the one that puts our object where the plan's was, through the grasp as it is
in our env (``T_tcp = T_obj_plan T_obj^-1 T_tcp``). The grasp closes at a slightly different place than in the
planning env (the TCP lags the plan by ~1 cm when the fingers close), and replaying the TCP path carried that
offset into the insertion (seed 0: the peg's head 12 mm and 16 mm off the hole's axis, stopped at the box).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sims.maniskill.env import ManiSkillEnv

logger = logging.getLogger(__name__)

POS_SCALE = 0.1  # m per unit action (pd_ee_delta_pose's pos bounds)
ROT_SCALE = 0.1  # rad per unit action (its rot bounds)


@dataclass(frozen=True)
class Waypoint:
    """One control step of a plan: the TCP's position (3,) m and quaternion wxyz (4,) the planning env reached, the
    gripper command (ours: +1 closed) and the held object's pose (7,) (position, quaternion wxyz) or None."""

    pos: np.ndarray
    quat: np.ndarray
    gripper: float
    held: np.ndarray | None


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
        self.held = TASKS[env.task].held
        self.plan: list[Waypoint] | None = None
        self.planned_ok = self.plan_solved = False

    def forget(self) -> None:
        """Drop the plan (a new episode began)."""
        self.plan = None

    def make_plan(self) -> list[Waypoint]:
        """Run the task's solution from the env's seed; returns one `Waypoint` per control step."""
        self.planned_ok, self.plan_solved, path = self.client.plan(self.env.task, self.env.seed_used,
                                                                   self.env.reconfigure)
        if not self.planned_ok:
            logger.warning("ManiSkill %s: the motion planner found no plan for seed %s", self.env.task,
                           self.env.seed_used)
        if not path:  # nothing planned: hold the start pose, gripper open
            pos, quat = self.env.tcp_pose()
            return [Waypoint(pos, quat, -1.0, None)]
        return [Waypoint(np.asarray(p, np.float64), np.asarray(q, np.float64), float(g),
                         None if h is None else np.asarray(h, np.float64)) for p, q, g, h in path]

    def act(self) -> np.ndarray:
        """The action (7,) in [-1, 1] toward the plan's pose for the env's current step (the TCP's, or while our
        gripper holds the task's ``held`` object, the pose that puts it where the plan's was)."""
        if self.plan is None:
            self.plan = self.make_plan()
        w = self.plan[min(self.env.elapsed, len(self.plan) - 1)]
        pos, quat = self.env.tcp_pose()
        target_pos, target_quat = w.pos, w.quat
        if self.held is not None and w.held is not None and w.gripper > 0 and self._holding():
            target_pos, target_quat = carried_target(pos, quat, *self.env.actor_pose(self.held), w.held[:3],
                                                     w.held[3:])
        return delta_action(pos, quat, target_pos, target_quat, w.gripper)

    def _holding(self) -> bool:
        ms = self.env.ms
        return bool(np.asarray(ms.agent.is_grasping(getattr(ms, self.held))).reshape(-1)[0])

    def close(self) -> None:
        self.client.close()


def carried_target(tcp_pos: np.ndarray, tcp_quat: np.ndarray, obj_pos: np.ndarray, obj_quat: np.ndarray,
                   goal_pos: np.ndarray, goal_quat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The TCP pose (position m, quaternion wxyz) that moves a rigidly held object from its pose (``obj_*``) to
    ``goal_*``, the grasp kept: ``T_goal T_obj^-1 T_tcp``."""
    from transforms3d.quaternions import qconjugate, qmult, quat2mat

    rel_q = qmult(qconjugate(obj_quat), tcp_quat)
    rel_p = quat2mat(obj_quat).T @ (tcp_pos - obj_pos)
    return goal_pos + quat2mat(goal_quat) @ rel_p, qmult(goal_quat, rel_q)


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
