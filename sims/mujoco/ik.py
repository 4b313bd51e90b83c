"""One control step of differential inverse kinematics: the arm's end-effector controller, as pure maths.

The sim's controller (`sims.mujoco.sim.ArmSim.apply_action`) and the ROS 2 bridge's joint mode (`robots.ik`, on a
real arm's description) both call `ik_step`, so an action moves a joint_trajectory robot the way it moves the sim.
A step: the TCP position target is the current position plus the action's displacement, clipped to the workspace;
the orientation target turns by the action's rotation and is tracked across steps; damped least squares on the
site Jacobian solves for the joint step, plus a pull towards the home posture in the Jacobian's null space; the
result is clipped to the joint limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from vla_rl.utils.rotations import axis_angle_to_quat, quat_to_axis_angle

DAMPING = 1e-3  # lambda of the damped least squares
NULLSPACE_GAIN = 0.2  # fraction of the way back to the home posture per step, within the null space
MAX_ROT_ERROR = 0.3  # rad: the orientation error solved for per step (a wound-up target is re-anchored)


@dataclass(frozen=True)
class IKParams:
    """What one arm's controller needs besides its state.

    ``pos_scale``: m per step at |action| = 1; ``rot_scale``: rad per step at |action| = 1; ``workspace`` (3, 2):
    the TCP box (m, min and max per axis, base frame); ``joint_limits`` (n, 2) rad; ``home`` (n,) rad.
    """

    pos_scale: float
    rot_scale: float
    workspace: np.ndarray
    joint_limits: np.ndarray
    home: np.ndarray


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """World-frame axis-angle (3,) taking rotation matrix ``current`` (3, 3) to ``target`` (3, 3)."""
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, (target @ current.T).ravel())
    return quat_to_axis_angle(q)


def turn_target(target_rot: np.ndarray, drot: np.ndarray) -> np.ndarray:
    """The orientation target (3, 3) turned by the world-frame axis-angle ``drot`` (3,) rad."""
    if not np.any(drot):
        return target_rot
    dmat = np.zeros(9)
    mujoco.mju_quat2Mat(dmat, axis_angle_to_quat(drot))
    return dmat.reshape(3, 3) @ target_rot


def site_jacobian(model: mujoco.MjModel, data: mujoco.MjData, site: int, dofs: np.ndarray) -> np.ndarray:
    """(6, len(dofs)): the site's linear then angular velocity per unit speed of each dof in ``dofs`` (world frame);
    ``data`` must hold the kinematics of the state (``mj_forward``, or ``mj_kinematics`` + ``mj_comPos``)."""
    jacp, jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
    mujoco.mj_jacSite(model, data, jacp, jacr, site)
    return np.vstack([jacp[:, dofs], jacr[:, dofs]])


def ik_step(action: np.ndarray, pos: np.ndarray, rot: np.ndarray, jac: np.ndarray, q: np.ndarray,
            target_rot: np.ndarray, p: IKParams) -> tuple[np.ndarray, np.ndarray]:
    """One step of the controller. Returns (joint targets (n,) rad, the new orientation target (3, 3)).

    Args:
        action: (7,) in [-1, 1]: dpos (3), drot (3), gripper (unused here). Kept in its own dtype: the sim's numbers
            are pinned (tests/test_determinism_pin.py) and a float32 action scales in float32.
        pos, rot: the TCP position (3,) m and rotation matrix (3, 3) at joint positions ``q`` (n,) rad.
        jac: (6, n) the TCP Jacobian at ``q`` (`site_jacobian`).
        target_rot: (3, 3) the orientation target carried from the last step.
    """
    target_pos = np.clip(pos + p.pos_scale * action[:3], p.workspace[:, 0], p.workspace[:, 1])
    target_rot = turn_target(target_rot, p.rot_scale * action[3:6])
    err_rot = rotation_error(target_rot, rot)
    n = np.linalg.norm(err_rot)
    if n > MAX_ROT_ERROR:  # re-anchor the orientation target near the current one so it cannot wind up
        err_rot *= MAX_ROT_ERROR / n
    err = np.concatenate([target_pos - pos, err_rot])
    dof = len(q)
    jjt = jac @ jac.T + DAMPING * np.eye(6)
    pinv = jac.T @ np.linalg.solve(jjt, np.eye(6))
    dq = pinv @ err + (np.eye(dof) - pinv @ jac) @ (NULLSPACE_GAIN * (p.home - q))
    return np.clip(q + dq, p.joint_limits[:, 0], p.joint_limits[:, 1]), target_rot
