"""PickCube: success needs a grasp (the shared contract: test_task_contract.py)."""

import numpy as np

from tasks.robot.pick import CUBE_HALF, LIFT_HEIGHT
from tests.tasks.robot.helpers import rollout
from vla_rl.splits import split_seeds

TASK = "mujoco/PickCube-v1"


def test_success_holds_a_lifted_cube_between_the_fingers(env):
    terminated, _ = rollout(env, split_seeds("test", 1)[0], env.expert_action)
    assert terminated
    cube, tcp = env.sim.body_pos("cube"), env.sim.tcp_pos()
    assert cube[2] - CUBE_HALF >= LIFT_HEIGHT
    assert np.linalg.norm(cube - tcp) < 0.03
    assert np.all(env.sim.gripper_qpos() > 0.01)  # the fingers rest on the cube, not closed on nothing


def test_a_raised_cube_without_a_grasp_is_no_success(env):
    env.reset(seed=7)
    assert not env.task.is_success(env.sim)
    # the cube floating at the success height, away from the open gripper
    tcp = env.sim.tcp_pos()
    env.sim.set_free_pose("cube_joint", tcp + np.array([0.15, 0.0, 0.0]))
    env.sim.forward()
    assert env.sim.body_pos("cube")[2] - CUBE_HALF >= LIFT_HEIGHT
    assert not env.task.is_success(env.sim)
    # ... and right at the TCP, but with the fingers open (no contact)
    env.sim.set_free_pose("cube_joint", tcp)
    env.sim.forward()
    assert not env.task.is_success(env.sim)
