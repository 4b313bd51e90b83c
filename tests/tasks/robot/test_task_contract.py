"""The contract every registered robot task keeps: the scripted expert solves it, seeded random actions do
not, a seed fixes the reset (same seed -> same physics state and instruction, in the same env or a fresh
one) and different seeds give different layouts. Task-specific checks live in the task's own test file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pytest

from sims.mujoco.sim import ArmSim
from tasks.robot._scene import DRAWER_OPEN, drawer_opening, in_bin, mocap_pose
from tasks.robot.stack import GREEN_HALF
from tests.tasks.robot.helpers import random_policy, rollout
from vla_rl.envs import make_env, robot_task_ids
from vla_rl.splits import split_seeds

MIN_MOVE = 1e-3  # m (or rad): how far every randomised quantity differs between two seeds


@dataclass(frozen=True)
class Contract:
    """One task's contract: what its reset randomises, the seeds to check, and the thresholds."""

    layout: Callable[[ArmSim], list[np.ndarray]]  # the quantities a reset randomises
    state_seed: int  # reset twice and in a fresh env: identical states and instructions
    layout_seeds: tuple[int, ...]  # every pair differs in every layout quantity by > MIN_MOVE
    expert_seeds: int = 40  # test-split seeds the expert runs on
    expert_min: float = 0.95  # its least success rate
    random_seeds: int = 20  # train-split seeds the random policy runs on
    random_max: float = 0.1  # its highest success rate
    all_end_early: bool = True  # every expert episode ends before max_steps (False: every successful one)
    after_expert: Callable[[ArmSim], None] | None = None  # checks the last expert episode's final state


def _bodies(*names: str) -> Callable[[ArmSim], list[np.ndarray]]:
    return lambda sim: [sim.body_pos(n) for n in names]


def _cabinet_pose(sim: ArmSim) -> list[np.ndarray]:
    pos, yaw = mocap_pose(sim, "cabinet")
    return [np.array([pos[0], pos[1], yaw])]


def _long_layout(sim: ArmSim) -> list[np.ndarray]:
    return [sim.body_pos("cube"), mocap_pose(sim, "bin")[0], mocap_pose(sim, "cabinet")[0]]


def _is_stacked(sim: ArmSim) -> None:
    red, green = sim.body_pos("red"), sim.body_pos("green")
    assert red[2] > green[2] + GREEN_HALF


def _placed_and_opened(sim: ArmSim) -> None:
    assert in_bin(sim, "cube") and drawer_opening(sim) >= DRAWER_OPEN


TEST5 = tuple(split_seeds("test", 5))
CONTRACTS: dict[str, Contract] = {
    "mujoco/Reach-v1": Contract(_bodies("target"), state_seed=2_000_008, layout_seeds=TEST5),
    "mujoco/PushCube-v1": Contract(_bodies("cube", "goal"), state_seed=123, layout_seeds=(123, 124)),
    "mujoco/PickCube-v1": Contract(_bodies("cube"), state_seed=321, layout_seeds=(321, 322)),
    "mujoco/PlaceInBin-v1": Contract(_bodies("cube", "bin"), state_seed=99, layout_seeds=(99, 100)),
    "mujoco/StackCube-v1": Contract(_bodies("red", "green"), state_seed=2_000_007, layout_seeds=TEST5,
                                    expert_seeds=35, all_end_early=False, after_expert=_is_stacked),
    "mujoco/OpenDrawer-v1": Contract(_cabinet_pose, state_seed=2_000_003, layout_seeds=TEST5,
                                     all_end_early=False),
    "mujoco/PlaceThenOpenDrawer-v1": Contract(_long_layout, state_seed=2_000_005, layout_seeds=TEST5,
                                              expert_seeds=30, all_end_early=False,
                                              after_expert=_placed_and_opened),
    # The quickstart suite (the narrow specs in vla_rl/envs/__init__.py).
    "mujoco/OpenDrawerNarrow-v1": Contract(_cabinet_pose, state_seed=2_000_003, layout_seeds=TEST5,
                                           all_end_early=False),
    "mujoco/PickCubeNarrow-v1": Contract(_bodies("cube"), state_seed=321, layout_seeds=(321, 322)),
    "mujoco/PushCubeNarrow-v1": Contract(_bodies("cube", "goal"), state_seed=123, layout_seeds=(123, 124)),
    "mujoco/PickCubeNarrow-v2": Contract(_bodies("cube"), state_seed=321, layout_seeds=(321, 322)),
    "mujoco/PushCubeNarrow-v2": Contract(_bodies("cube", "goal"), state_seed=123, layout_seeds=(123, 124)),
}


def _make(task_id: str):
    # No cameras: nothing here looks at images, and reset would render them (~2 ms for each of ~450 resets).
    # Rendering never touches the physics state, so every rollout is the same as with cameras.
    return make_env(task_id, image_size=32, cameras=())


@pytest.fixture(scope="module", params=robot_task_ids("mujoco"), ids=lambda task_id: task_id.split("/")[-1])
def env(request):
    e = _make(request.param)
    yield e
    e.close()


def test_every_registered_task_has_a_contract():
    assert sorted(CONTRACTS) == sorted(robot_task_ids("mujoco"))


def test_expert_succeeds_on_test_seeds(env):
    c = CONTRACTS[env.task_id]
    results = [rollout(env, s, env.expert_action) for s in split_seeds("test", c.expert_seeds)]
    rate = np.mean([ok for ok, _ in results])
    assert rate >= c.expert_min, f"expert success {rate:.2f}"
    assert max(n for ok, n in results if ok or c.all_end_early) < env.max_steps
    if c.after_expert is not None:
        c.after_expert(env.sim)


def test_random_actions_rarely_succeed(env):
    c = CONTRACTS[env.task_id]
    policy = random_policy(0)
    wins = [rollout(env, s, policy)[0] for s in split_seeds("train", c.random_seeds)]
    assert np.mean(wins) <= c.random_max


def test_same_seed_same_state(env):
    seed = CONTRACTS[env.task_id].state_seed
    env.reset(seed=seed)
    state, instruction = env.get_state(), env.instruction
    env.reset(seed=seed)
    np.testing.assert_array_equal(env.get_state(), state)
    assert env.instruction == instruction
    other = _make(env.task_id)
    try:
        other.reset(seed=seed)
        np.testing.assert_array_equal(other.get_state(), state)
        assert other.instruction == instruction
    finally:
        other.close()


def test_different_seeds_different_layouts(env):
    c = CONTRACTS[env.task_id]
    states, layouts = [], []
    for seed in c.layout_seeds:
        env.reset(seed=seed)
        states.append(env.get_state())
        layouts.append(c.layout(env.sim))
        assert env.instruction in env.task.instructions
    for i, j in combinations(range(len(c.layout_seeds)), 2):
        assert not np.allclose(states[i], states[j])
        for a, b in zip(layouts[i], layouts[j], strict=True):
            assert np.linalg.norm(a - b) > MIN_MOVE, (c.layout_seeds[i], c.layout_seeds[j])
