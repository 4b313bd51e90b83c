"""The ManiSkill expert's pose maths (no simulator): the EE delta toward a target, the carried object's TCP target."""

import numpy as np
from transforms3d.euler import euler2quat
from transforms3d.quaternions import qmult, quat2mat

from sims.maniskill.expert import carried_target, delta_action


def test_carried_target_moves_the_tcp_with_the_object_rigidly() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        tcp_p, obj_p, goal_p = rng.normal(size=3), rng.normal(size=3), rng.normal(size=3)
        tcp_q, obj_q, goal_q = (euler2quat(*rng.uniform(-np.pi, np.pi, 3)) for _ in range(3))
        p, q = carried_target(tcp_p, tcp_q, obj_p, obj_q, goal_p, goal_q)
        # the grasp (the TCP seen from the object) is the same before and after
        before = quat2mat(obj_q).T @ (tcp_p - obj_p)
        after = quat2mat(goal_q).T @ (p - goal_p)
        assert np.allclose(before, after)
        assert np.allclose(quat2mat(obj_q).T @ quat2mat(tcp_q), quat2mat(goal_q).T @ quat2mat(q))
    # the object already at its goal: the TCP stays where it is
    p, q = carried_target(tcp_p, tcp_q, obj_p, obj_q, obj_p, obj_q)
    assert np.allclose(p, tcp_p) and np.allclose(quat2mat(q), quat2mat(tcp_q))


def test_delta_action_scales_translation_and_rotation_and_clips() -> None:
    q0 = euler2quat(np.pi, 0, 0)
    a = delta_action(np.zeros(3), q0, np.array([0.05, -0.2, 0.0]), qmult(euler2quat(0, 0, 0.05), q0), 1.0)
    assert np.allclose(a[:3], [0.5, -1.0, 0.0])  # 0.1 m per unit, clipped at 1
    assert np.allclose(a[3:6], [0, 0, 0.5], atol=1e-6)  # 0.05 rad about world z = 0.5 units
    assert a[6] == 1.0 and a.dtype == np.float32
