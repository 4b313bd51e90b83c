"""PlaceInBin: the expert leaves the cube in the bin, the cube starts outside it, the predicate is sound
(the shared contract: test_task_contract.py)."""

import numpy as np

from tasks.robot.pick import CUBE_HALF
from tasks.robot.place import BIN_FLOOR, BIN_INNER
from tests.tasks.robot.helpers import rollout
from vla_rl.splits import split_seeds

TASK = "mujoco/PlaceInBin-v1"


def test_expert_leaves_the_cube_in_the_bin(env):
    assert rollout(env, split_seeds("test", 1)[0], env.expert_action)[0]
    cube, bin_xy = env.sim.body_pos("cube"), env.sim.body_pos("bin")[:2]
    assert np.all(np.abs(cube[:2] - bin_xy) < BIN_INNER)
    assert cube[2] < BIN_FLOOR + CUBE_HALF + 0.01


def test_cube_starts_outside_the_bin(env):
    for seed in split_seeds("val", 30):
        env.reset(seed=seed)
        cube, bin_xy = env.sim.body_pos("cube")[:2], env.sim.body_pos("bin")[:2]
        assert np.linalg.norm(cube - bin_xy) >= 0.18
        assert not env.task.is_success(env.sim)


def test_success_needs_the_cube_low_in_the_bin_and_released(env):
    env.reset(seed=11)
    bin_pos = env.sim.body_pos("bin")
    resting = bin_pos + np.array([0.0, 0.0, BIN_FLOOR + CUBE_HALF])
    env.sim.set_free_pose("cube_joint", resting)
    env.sim.forward()
    assert env.task.is_success(env.sim)  # the fingers are open and far above
    env.sim.set_free_pose("cube_joint", resting + np.array([0.0, 0.0, 0.08]))  # above the bin, not in it
    env.sim.forward()
    assert not env.task.is_success(env.sim)
    env.sim.set_free_pose("cube_joint", resting + np.array([2 * BIN_INNER, 0.0, -BIN_FLOOR]))  # beside it
    env.sim.forward()
    assert not env.task.is_success(env.sim)
