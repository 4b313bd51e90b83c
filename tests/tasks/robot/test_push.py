"""PushCube: layouts stay in range, the predicate is sound (the shared contract: test_task_contract.py)."""

import numpy as np

from tasks.robot.push import SUCCESS_DIST
from vla_rl.splits import split_seeds

TASK = "mujoco/PushCube-v1"


def test_layouts_stay_in_range(env):
    for seed in split_seeds("val", 30):
        env.reset(seed=seed)
        cube, goal = env.sim.body_pos("cube")[:2], env.sim.body_pos("goal")[:2]
        for p in (cube, goal):
            assert 0.35 <= p[0] <= 0.7 and -0.25 <= p[1] <= 0.25
        assert 0.1 <= np.linalg.norm(goal - cube) <= 0.2 + 1e-9
        assert not env.task.is_success(env.sim)


def test_success_predicate(env):
    env.reset(seed=5)
    goal = env.sim.body_pos("goal")
    env.sim.set_free_pose("cube_joint", goal + np.array([SUCCESS_DIST * 0.8, 0.0, 0.02]))
    env.sim.forward()
    assert env.task.is_success(env.sim)
    env.sim.set_free_pose("cube_joint", goal + np.array([0.0, SUCCESS_DIST * 1.2, 0.02]))
    env.sim.forward()
    assert not env.task.is_success(env.sim)
