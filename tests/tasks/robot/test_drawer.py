"""OpenDrawer: the expert opens it, random actions do not, resets are seeded, the drawer moves by physics."""

import numpy as np
import pytest

from tasks.robot import make
from tasks.robot._scene import DRAWER_OPEN, drawer_opening, mocap_pose
from tasks.robot.splits import split_seeds

TASK = "mujoco/OpenDrawer-v1"


@pytest.fixture(scope="module")
def env():
    e = make(TASK, image_size=32)
    yield e
    e.close()


def _rollout(env, seed: int, policy) -> tuple[bool, int]:
    """Run one episode without rendering; returns (success, control steps)."""
    env.reset(seed=seed)
    while True:
        _, _, terminated, truncated, _ = env.step_chunk(policy()[None], render=False)
        if terminated or truncated:
            return bool(terminated), env.elapsed


def test_expert_succeeds_on_test_seeds(env):
    results = [_rollout(env, s, env.expert_action) for s in split_seeds("test", 40)]
    rate = np.mean([ok for ok, _ in results])
    assert rate >= 0.95, f"expert success {rate:.2f}"
    assert max(n for ok, n in results if ok) < env.max_steps


def test_random_actions_rarely_succeed(env):
    rng = np.random.default_rng(0)
    wins = [_rollout(env, s, lambda: rng.uniform(-1, 1, 7).astype(np.float32))[0] for s in split_seeds("train", 20)]
    assert np.mean(wins) <= 0.1


def test_reset_is_seeded(env):
    env.reset(seed=2_000_003)
    state, instruction = env.get_state(), env.instruction
    other = make(TASK, image_size=32)
    try:
        other.reset(seed=2_000_003)
        np.testing.assert_array_equal(other.get_state(), state)
        assert other.instruction == instruction
    finally:
        other.close()
    poses = []
    for seed in split_seeds("test", 5):
        env.reset(seed=seed)
        pos, yaw = mocap_pose(env.sim, "cabinet")
        poses.append(np.array([pos[0], pos[1], yaw]))
        assert 0.45 <= pos[0] <= 0.7
        assert drawer_opening(env.sim) < DRAWER_OPEN
        assert env.instruction in env.task.instructions
    for i in range(len(poses)):
        for j in range(i):
            assert not np.allclose(poses[i], poses[j])


def test_pulling_the_handle_moves_the_drawer_joint(env):
    env.reset(seed=2_000_010)
    q0, hook0 = drawer_opening(env.sim), env.sim.site_pos("drawer_hook")
    openings = []
    while True:
        _, _, terminated, truncated, _ = env.step_chunk(env.expert_action()[None], render=False)
        openings.append(drawer_opening(env.sim))
        if terminated or truncated:
            break
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
