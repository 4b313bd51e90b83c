"""PlaceInBin: the scripted expert solves it, random actions do not, resets are seeded, the predicate is sound."""

import numpy as np
import pytest

from tasks.robot import make
from tasks.robot.pick import CUBE_HALF
from tasks.robot.place import BIN_FLOOR, BIN_INNER
from tasks.robot.splits import split_seeds

TASK = "mujoco/PlaceInBin-v1"


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


def test_expert_leaves_the_cube_in_the_bin(env):
    assert _rollout(env, split_seeds("test", 1)[0], env.expert_action)[0]
    cube, bin_xy = env.sim.body_pos("cube"), env.sim.body_pos("bin")[:2]
    assert np.all(np.abs(cube[:2] - bin_xy) < BIN_INNER)
    assert cube[2] < BIN_FLOOR + CUBE_HALF + 0.01


def test_random_actions_rarely_succeed(env):
    rng = np.random.default_rng(0)
    wins = [_rollout(env, s, lambda: rng.uniform(-1, 1, 7).astype(np.float32))[0] for s in split_seeds("train", 20)]
    assert np.mean(wins) <= 0.1


def test_reset_is_seeded(env):
    env.reset(seed=99)
    state = env.get_state()
    cube, bin_pos = env.sim.body_pos("cube"), env.sim.body_pos("bin")
    env.reset(seed=99)
    np.testing.assert_array_equal(env.get_state(), state)
    env.reset(seed=100)
    assert np.linalg.norm(env.sim.body_pos("cube") - cube) > 1e-3
    assert np.linalg.norm(env.sim.body_pos("bin") - bin_pos) > 1e-3


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
