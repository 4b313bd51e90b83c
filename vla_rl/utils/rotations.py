"""Quaternion <-> axis-angle conversions (numpy only).

Quaternions here are scalar-first, (w, x, y, z), as MuJoCo stores them. Files that store (x, y, z, w)
(robomimic, LIBERO) reorder at the call site, e.g. ``quat_to_axis_angle(q[..., [3, 0, 1, 2]])``.
"""

from __future__ import annotations

import numpy as np


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """Quaternions (w, x, y, z) -> axis-angle vectors (axis * angle, angle in [0, pi]).

    Args:
        q: (4,) or (..., 4); need not be normalised; q and -q give the same result.

    Returns:
        (3,) for a single quaternion, float64 (..., 3) for a batch. Rotations below about 2e-9 rad map to
        exactly zero.
    """
    q = np.asarray(q)
    if q.ndim == 1:  # the simulator's per-step path: scalar code, no masking
        q = q / np.linalg.norm(q)
        if q[0] < 0:
            q = -q
        s = np.linalg.norm(q[1:])
        if s < 1e-9:
            return np.zeros(3)
        return q[1:] / s * 2.0 * np.arctan2(s, q[0])
    q = q.astype(np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = np.where(q[..., :1] < 0, -q, q)  # same rotation; w >= 0 gives angle <= pi
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    small = s < 1e-9
    safe = np.where(small, 1.0, s)
    return np.where(small, 0.0, q[..., 1:] / safe * 2.0 * np.arctan2(s, q[..., :1]))


def axis_angle_to_quat(v: np.ndarray) -> np.ndarray:
    """Axis-angle vector (3,) (axis * angle) -> unit quaternion (4,) (w, x, y, z); zero maps to identity."""
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    axis = v / angle
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])
