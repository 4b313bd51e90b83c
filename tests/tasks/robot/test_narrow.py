"""Narrow task variants (env specs with a ``spread``): the same seed draws the same unit numbers, mapped into the
centred fraction of each range (`sims.mujoco.task.NarrowedRNG`)."""

import numpy as np
import pytest

from sims.mujoco.task import NarrowedRNG, flip
from vla_rl.envs import env_spec, make_env
from vla_rl.splits import split_seeds


def spread(task_id: str) -> float:
    return env_spec(task_id).kwargs["spread"]


def test_narrowed_rng_maps_each_draw_into_the_centred_fraction():
    full, narrow = np.random.default_rng(7), NarrowedRNG(np.random.default_rng(7), 0.25)
    for low, high in [(0.0, 1.0), ([0.35, -0.25, 0.05], [0.7, 0.25, 0.3]), (-0.2, 0.2)]:
        a, b = full.uniform(low, high), narrow.uniform(low, high)
        mid = (np.asarray(low) + np.asarray(high)) / 2
        np.testing.assert_allclose(b - mid, 0.25 * (a - mid), atol=1e-12)
    assert full.integers(100) == narrow.integers(100)  # other draws pass through, in step
    assert isinstance(narrow.uniform(-0.2, 0.2), float)


@pytest.mark.parametrize("spread", [0.0, -0.5, 1.5])
def test_narrowed_rng_refuses_a_bad_spread(spread):
    with pytest.raises(ValueError, match="spread"):
        NarrowedRNG(np.random.default_rng(0), spread)


def test_narrow_cubes_are_the_full_tasks_pulled_toward_the_centre():
    full, narrow = (make_env(t, image_size=16, cameras=()) for t in ("mujoco/PickCube-v1", "mujoco/PickCubeNarrow-v1"))
    mid = np.array([0.525, 0.0])
    for seed in split_seeds("test", 10):
        full.reset(seed=seed)
        narrow.reset(seed=seed)
        assert full.instruction == narrow.instruction
        np.testing.assert_allclose(narrow.sim.body_pos("cube")[:2] - mid,
                                   spread("mujoco/PickCubeNarrow-v1") * (full.sim.body_pos("cube")[:2] - mid),
                                   atol=1e-6)
    full.close()
    narrow.close()


def test_the_quickstart_variants_are_narrower_than_their_tasks():
    ids = ("mujoco/OpenDrawerNarrow-v1", "mujoco/PickCubeNarrow-v1", "mujoco/PushCubeNarrow-v1")
    assert all(0 < spread(t) < 1 for t in ids)
    assert spread("mujoco/PickCubeNarrow-v2") < spread("mujoco/PickCubeNarrow-v1")
    assert spread("mujoco/PushCubeNarrow-v2") < spread("mujoco/PushCubeNarrow-v1")
    v1, v2, full = (env_spec(f"mujoco/PickCube{v}") for v in ("Narrow-v1", "Narrow-v2", "-v1"))
    assert v1.entry_point == v2.entry_point == full.entry_point and v1.kwargs["task"] == full.kwargs["task"]
    assert v2.max_episode_steps == v1.max_episode_steps < full.max_episode_steps
    assert make_env("mujoco/PickCubeNarrow-v2", image_size=16).max_steps == 50


def test_flip_keeps_the_nominal_option_in_proportion_to_the_spread():
    draws = 20_000
    full = [flip(np.random.default_rng(s)) for s in range(draws)]
    assert full == [bool(np.random.default_rng(s).random() < 0.5) for s in range(draws)]  # the full range: u < p
    narrow = np.mean([flip(NarrowedRNG(np.random.default_rng(s), 0.1)) for s in range(draws)])
    assert abs(narrow - 0.05) < 0.01  # p * spread; binomial sd 0.0015
    assert np.mean([flip(np.random.default_rng(s), 0.2) for s in range(draws)]) == pytest.approx(0.2, abs=0.01)


def test_a_narrow_place_then_open_drawer_mostly_keeps_the_cabinet_right():
    def left(task_id: str, seeds: list[int]) -> list[bool]:
        env = make_env(task_id, image_size=16, cameras=())
        sides = []
        for seed in seeds:
            env.reset(seed=seed)
            sides.append(bool(env.sim.body_pos("cabinet")[1] > 0))
        env.close()
        return sides

    seeds = split_seeds("train", 200)
    full, narrow = left("mujoco/PlaceThenOpenDrawer-v1", seeds), left("mujoco/PlaceThenOpenDrawer-v1@spread=0.1", seeds)
    assert 0.35 < np.mean(full) < 0.65 and np.mean(narrow) < 0.12
    assert not narrow[0]  # train seed 0, the recipes' one demo, is nominal
