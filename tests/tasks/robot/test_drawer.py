"""OpenDrawer: the cabinet starts in reach and shut, the drawer moves by physics (the shared contract:
test_task_contract.py)."""

import numpy as np
import pytest

from tasks.robot._scene import DRAWER_OPEN, drawer_opening, mocap_pose
from tests.tasks.robot.helpers import run_episode
from vla_rl.splits import split_seeds

TASK = "mujoco/OpenDrawer-v1"


def test_cabinet_starts_in_reach_and_shut(env):
    for seed in split_seeds("test", 5):
        env.reset(seed=seed)
        pos, _ = mocap_pose(env.sim, "cabinet")
        assert 0.45 <= pos[0] <= 0.7
        assert drawer_opening(env.sim) < DRAWER_OPEN


def test_pulling_the_handle_moves_the_drawer_joint(env):
    env.reset(seed=2_000_010)
    q0, hook0 = drawer_opening(env.sim), env.sim.site_pos("drawer_hook")
    openings = []
    terminated, _ = run_episode(env, env.expert_action, on_step=lambda: openings.append(drawer_opening(env.sim)))
    assert terminated
    env.sim.forward()  # kinematics of the final state (mj_step leaves those of the last substep's start)
    q1, hook1 = drawer_opening(env.sim), env.sim.site_pos("drawer_hook")
    assert q1 >= DRAWER_OPEN > q0
    # the handle travelled with the joint, toward the robot, and the joint moved gradually (not teleported)
    _, yaw = mocap_pose(env.sim, "cabinet")
    pull = np.array([-np.cos(yaw), -np.sin(yaw), 0.0])
    assert np.dot(hook1 - hook0, pull) == pytest.approx(q1 - q0, abs=1e-6)
    assert max(np.diff(openings)) < 0.05
    assert env.sim.tcp_pos()[0] < hook0[0]  # the gripper moved back with it


def test_drawer_stays_shut_unless_pulled(env):
    env.reset(seed=2_000_011)
    q0 = drawer_opening(env.sim)
    # sweep the gripper toward the robot high above the cabinet: nothing touches the handle
    for _ in range(30):
        env.step_chunk(np.array([[-1, 0, 1, 0, 0, 0, 1]], dtype=np.float32), render=False)
    assert drawer_opening(env.sim) == pytest.approx(q0, abs=1e-3)
    assert not env.task.is_success(env.sim)
    # set the joint open by hand: the predicate reads the joint
    env.sim.set_joint_qpos("drawer_slide", DRAWER_OPEN + 0.01)
    env.sim.forward()
    assert env.task.is_success(env.sim)
