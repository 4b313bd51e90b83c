"""PushCube: the scripted expert solves it, random actions do not, resets are seeded, the predicate is sound."""

import numpy as np
import pytest

from tasks.robot import make
from tasks.robot.push import SUCCESS_DIST
from tasks.robot.splits import split_seeds

TASK = "mujoco/PushCube-v1"


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


def test_random_actions_rarely_succeed(env):
    rng = np.random.default_rng(0)
    wins = [_rollout(env, s, lambda: rng.uniform(-1, 1, 7).astype(np.float32))[0] for s in split_seeds("train", 20)]
    assert np.mean(wins) <= 0.1


def test_reset_is_seeded(env):
    env.reset(seed=123)
    state = env.get_state()
    cube, goal = env.sim.body_pos("cube"), env.sim.body_pos("goal")
    env.reset(seed=123)
    np.testing.assert_array_equal(env.get_state(), state)
    env.reset(seed=124)
    assert np.linalg.norm(env.sim.body_pos("cube") - cube) > 1e-3
    assert np.linalg.norm(env.sim.body_pos("goal") - goal) > 1e-3


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
