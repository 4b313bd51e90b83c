"""StackCube: cubes start apart, the predicate needs a released stack (the shared contract:
test_task_contract.py)."""

import numpy as np
import pytest

from tasks.robot._scene import CUBE_HALF, yaw_quat
from tasks.robot.stack import GREEN_HALF
from vla_rl.splits import split_seeds

TASK = "mujoco/StackCube-v1"


def test_cubes_start_apart_on_the_table(env):
    for seed in split_seeds("test", 30):
        env.reset(seed=seed)
        red, green = env.sim.body_pos("red"), env.sim.body_pos("green")
        assert np.linalg.norm(red[:2] - green[:2]) >= 0.1
        assert red[2] == pytest.approx(CUBE_HALF) and green[2] == pytest.approx(GREEN_HALF)


def _settle(env, steps: int = 15) -> bool:
    """Hold the arm still with the gripper open; whether the task reports success at the end."""
    for _ in range(steps):
        env.sim.apply_action(np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32))
    return env.task.is_success(env.sim)


def test_predicate_needs_red_resting_on_green(env):
    env.reset(seed=2_000_001)
    green = env.sim.body_pos("green")
    # red set on top of green: success once it has settled
    env.sim.set_free_pose("red_joint", green + [0.005, 0, GREEN_HALF + CUBE_HALF + 0.001], yaw_quat(0.1))
    env.sim.forward()
    assert _settle(env)
    # red next to green: no success
    env.sim.set_free_pose("red_joint", green + [0.0, 0.08, CUBE_HALF - GREEN_HALF], yaw_quat(0.0))
    env.sim.forward()
    assert not _settle(env)


def test_a_range_too_narrow_for_two_cubes_is_a_clear_error_not_a_hang():
    from vla_rl.envs import make_env

    env = make_env(f"{TASK}@spread=0.1", image_size=32)
    try:
        with pytest.raises(ValueError, match="too narrow"):
            env.reset(seed=0)
    finally:
        env.close()
    wide = make_env(f"{TASK}@spread=0.5", image_size=32)
    try:
        wide.reset(seed=0)  # room for both
        assert np.linalg.norm(wide.sim.body_pos("red")[:2] - wide.sim.body_pos("green")[:2]) >= 0.12
    finally:
        wide.close()
