"""StackCube: the expert stacks, random actions do not, resets are seeded, the predicate needs a released stack."""

import numpy as np
import pytest

from tasks.robot import make
from tasks.robot._scene import CUBE_HALF, yaw_quat
from tasks.robot.splits import split_seeds
from tasks.robot.stack import GREEN_HALF

TASK = "mujoco/StackCube-v1"


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
    results = [_rollout(env, s, env.expert_action) for s in split_seeds("test", 35)]
    rate = np.mean([ok for ok, _ in results])
    assert rate >= 0.95, f"expert success {rate:.2f}"
    assert max(n for ok, n in results if ok) < env.max_steps
    # the final state really is a stack
    red, green = env.sim.body_pos("red"), env.sim.body_pos("green")
    assert red[2] > green[2] + GREEN_HALF


def test_random_actions_rarely_succeed(env):
    rng = np.random.default_rng(0)
    wins = [_rollout(env, s, lambda: rng.uniform(-1, 1, 7).astype(np.float32))[0] for s in split_seeds("train", 20)]
    assert np.mean(wins) <= 0.1


def test_reset_is_seeded(env):
    env.reset(seed=2_000_007)
    state, instruction = env.get_state(), env.instruction
    other = make(TASK, image_size=32)
    try:
        other.reset(seed=2_000_007)
        np.testing.assert_array_equal(other.get_state(), state)
        assert other.instruction == instruction
    finally:
        other.close()
    positions = []
    for seed in split_seeds("test", 5):
        env.reset(seed=seed)
        positions.append(np.concatenate([env.sim.body_pos("red"), env.sim.body_pos("green")]))
        assert env.instruction in env.task.instructions
    for i in range(len(positions)):
        for j in range(i):
            assert not np.allclose(positions[i], positions[j])


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
