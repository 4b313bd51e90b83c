"""PlaceThenOpenDrawer: the chained expert solves it, random actions do not, resets are seeded and collision-free,
and success needs both sub-goals at once."""

import numpy as np
import pytest

from tasks.robot import make
from tasks.robot._scene import BIN_HALF, CUBE_HALF, DRAWER_OPEN, drawer_opening, in_bin, mocap_pose
from tasks.robot.splits import split_seeds

TASK = "mujoco/PlaceThenOpenDrawer-v1"


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
    results = [_rollout(env, s, env.expert_action) for s in split_seeds("test", 30)]
    rate = np.mean([ok for ok, _ in results])
    assert rate >= 0.95, f"expert success {rate:.2f}"
    assert max(n for ok, n in results if ok) < env.max_steps
    assert in_bin(env.sim, "cube") and drawer_opening(env.sim) >= DRAWER_OPEN


def test_random_actions_rarely_succeed(env):
    rng = np.random.default_rng(0)
    wins = [_rollout(env, s, lambda: rng.uniform(-1, 1, 7).astype(np.float32))[0] for s in split_seeds("train", 20)]
    assert np.mean(wins) <= 0.1


def test_reset_is_seeded(env):
    env.reset(seed=2_000_005)
    state, instruction = env.get_state(), env.instruction
    other = make(TASK, image_size=32)
    try:
        other.reset(seed=2_000_005)
        np.testing.assert_array_equal(other.get_state(), state)
        assert other.instruction == instruction
    finally:
        other.close()
    layouts = []
    for seed in split_seeds("test", 5):
        env.reset(seed=seed)
        layouts.append(np.concatenate([env.sim.body_pos("cube"), mocap_pose(env.sim, "bin")[0],
                                       mocap_pose(env.sim, "cabinet")[0]]))
        assert env.instruction in env.task.instructions
    for i in range(len(layouts)):
        for j in range(i):
            assert not np.allclose(layouts[i], layouts[j])


def test_reset_layout_has_no_overlaps(env):
    for seed in split_seeds("test", 40):
        env.reset(seed=seed)
        sim = env.sim
        cube_geom, table = sim.model.geom("cube_geom").id, sim.model.geom("table").id
        for i in range(sim.data.ncon):  # the only contacts: the cube resting on the table
            assert {int(sim.data.contact[i].geom1), int(sim.data.contact[i].geom2)} == {cube_geom, table}
        cube = sim.body_pos("cube")
        assert cube[2] == pytest.approx(CUBE_HALF)
        assert not in_bin(sim, "cube")
        assert np.max(np.abs(cube[:2] - mocap_pose(sim, "bin")[0][:2])) > BIN_HALF + CUBE_HALF
        assert drawer_opening(sim) == 0.0


def test_success_needs_both_subgoals(env):
    env.reset(seed=2_000_002)
    sim = env.sim
    assert not env.task.is_success(sim)
    # drawer open, cube still on the table: no
    sim.set_joint_qpos("drawer_slide", DRAWER_OPEN + 0.02)
    sim.forward()
    assert not env.task.is_success(sim)
    # cube dropped into the bin as well: yes
    bin_pos = mocap_pose(sim, "bin")[0]
    sim.set_free_pose("cube_joint", bin_pos + [0.0, 0.0, 0.04])
    sim.forward()
    for _ in range(10):
        sim.apply_action(np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32))
    assert in_bin(sim, "cube")
    assert env.task.is_success(sim)
    # cube in the bin, drawer pushed shut: no
    sim.set_joint_qpos("drawer_slide", 0.0)
    sim.forward()
    assert not env.task.is_success(sim)
