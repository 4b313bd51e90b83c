"""PickCube: the scripted expert solves it, random actions do not, resets are seeded, the predicate needs a grasp."""

import numpy as np
import pytest

from tasks.robot import make
from tasks.robot.pick import CUBE_HALF, LIFT_HEIGHT
from tasks.robot.splits import split_seeds

TASK = "mujoco/PickCube-v1"


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
    assert max(n for _, n in results) < env.max_steps


def test_success_holds_a_lifted_cube_between_the_fingers(env):
    env.reset(seed=split_seeds("test", 1)[0])
    while True:
        _, _, terminated, truncated, _ = env.step_chunk(env.expert_action()[None], render=False)
        if terminated or truncated:
            break
    assert terminated
    cube, tcp = env.sim.body_pos("cube"), env.sim.tcp_pos()
    assert cube[2] - CUBE_HALF >= LIFT_HEIGHT
    assert np.linalg.norm(cube - tcp) < 0.03
    assert np.all(env.sim.gripper_qpos() > 0.01)  # the fingers rest on the cube, not closed on nothing


def test_random_actions_rarely_succeed(env):
    rng = np.random.default_rng(0)
    wins = [_rollout(env, s, lambda: rng.uniform(-1, 1, 7).astype(np.float32))[0] for s in split_seeds("train", 20)]
    assert np.mean(wins) <= 0.1


def test_reset_is_seeded(env):
    env.reset(seed=321)
    state = env.get_state()
    cube = env.sim.body_pos("cube")
    env.reset(seed=321)
    np.testing.assert_array_equal(env.get_state(), state)
    env.reset(seed=322)
    assert np.linalg.norm(env.sim.body_pos("cube") - cube) > 1e-3


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
