"""Policy actions <-> twist-mode commands, and the policy's state from ROS messages. Pure numpy.

A policy action (7,) in [-1, 1] is one 20 Hz control step: a TCP displacement ``a[:3] * pos_scale`` (m), a rotation
``a[3:6] * rot_scale`` (rad, axis-angle, base frame) and a gripper command ``a[6]`` (-1 open .. +1 closed). As a
MoveIt Servo twist over one period ``dt``: ``linear = a[:3] * pos_scale / dt`` (m/s), ``angular = a[3:6] *
rot_scale / dt`` (rad/s); the fingers as each finger's opening ``(1 - a[6]) / 2 * finger_open`` (m), the target the
sim's finger servos get.
"""

from __future__ import annotations

import numpy as np

from vla_rl.utils.rotations import quat_to_axis_angle


def action_to_command(action: np.ndarray, dt: float, pos_scale: float, rot_scale: float,
                      finger_open: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Action (7,) -> (linear (3,) m/s, angular (3,) rad/s, finger opening m)."""
    a = np.asarray(action, dtype=np.float64)
    return a[:3] * pos_scale / dt, a[3:6] * rot_scale / dt, float((1.0 - a[6]) * 0.5 * finger_open)


def command_to_action(linear: np.ndarray, angular: np.ndarray, opening: float, dt: float, pos_scale: float,
                      rot_scale: float, finger_open: float) -> np.ndarray:
    """The inverse of `action_to_command`: float32 (7,), clipped to [-1, 1]."""
    a = np.empty(7)
    a[:3] = np.asarray(linear, dtype=np.float64) * dt / pos_scale
    a[3:6] = np.asarray(angular, dtype=np.float64) * dt / rot_scale
    a[6] = 1.0 - 2.0 * opening / finger_open
    return np.clip(a, -1.0, 1.0).astype(np.float32)


def state_from_pose(position: np.ndarray, quat_xyzw: np.ndarray, fingers: np.ndarray) -> np.ndarray:
    """The policy's state float32 (8,): TCP position (3), orientation as axis-angle (3), finger openings (2), from
    a Pose (quaternion x, y, z, w as ROS orders it) and the finger joints of a JointState."""
    x, y, z, w = np.asarray(quat_xyzw, dtype=np.float64)
    aa = quat_to_axis_angle(np.array([w, x, y, z]))
    return np.concatenate([np.asarray(position, np.float64), aa, np.asarray(fingers, np.float64)]).astype(np.float32)
