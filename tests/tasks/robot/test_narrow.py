"""Narrow task variants: the same seed draws the same unit numbers, mapped into the centred fraction of
each range (`sims.mujoco.task.NarrowedRNG`)."""

import numpy as np
import pytest

from sims.mujoco.task import NarrowedRNG
from tasks.robot import make
from tasks.robot.narrow import OpenDrawerNarrow, PickCubeNarrow, PickCubeNarrowV2, PushCubeNarrow, PushCubeNarrowV2
from vla_rl.splits import split_seeds


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
    full, narrow = (make(t, image_size=16, cameras=()) for t in ("mujoco/PickCube-v1", "mujoco/PickCubeNarrow-v1"))
    mid = np.array([0.525, 0.0])
    for seed in split_seeds("test", 10):
        full.reset(seed=seed)
        narrow.reset(seed=seed)
        assert full.instruction == narrow.instruction
        np.testing.assert_allclose(narrow.sim.body_pos("cube")[:2] - mid,
                                   PickCubeNarrow.spread * (full.sim.body_pos("cube")[:2] - mid), atol=1e-6)
    full.close()
    narrow.close()


def test_the_quickstart_variants_are_narrower_than_their_tasks():
    assert all(0 < cls.spread < 1 for cls in (OpenDrawerNarrow, PickCubeNarrow, PushCubeNarrow))
    assert PickCubeNarrowV2.spread < PickCubeNarrow.spread and PushCubeNarrowV2.spread < PushCubeNarrow.spread
    assert PickCubeNarrowV2.__name__ == "PickCubeNarrowV2" and PickCubeNarrowV2.max_steps == PickCubeNarrow.max_steps
