"""Synthetic episodes for the dataset tests (no simulator needed)."""

from __future__ import annotations

import numpy as np
import pytest

from vla_rl.data import Episode

TASKS = ("pick up the red cube", "open the drawer")


def synthetic_frames(length: int, h: int = 32, w: int = 48, seed: int = 0, sharp: bool = True) -> np.ndarray:
    """uint8 (T, H, W, 3): colour gradients that drift, plus (``sharp``) a random-coloured moving square."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    out = np.zeros((length, h, w, 3), dtype=np.uint8)
    for t in range(length):
        out[t, ..., 0] = (40 + 3 * x + t + seed) % 256
        out[t, ..., 1] = (60 + 4 * y) % 256
        out[t, ..., 2] = (100 + x + y + 2 * seed) % 256
        if sharp:
            r, c = (2 * t + seed) % (h - 8), (3 * t) % (w - 8)
            out[t, r:r + 8, c:c + 8] = rng.integers(0, 256, 3)
    return out


def synthetic_episodes(lengths: tuple[int, ...] = (5, 9, 7), sharp: bool = True, seed: int = 0,
                       cameras: tuple[str, ...] = ("agentview", "wrist")) -> list[Episode]:
    rng = np.random.default_rng(seed)
    eps = []
    for i, n in enumerate(lengths):
        step_success = np.zeros(n, dtype=bool)
        if i % 3 != 2:
            step_success[-1] = True
        eps.append(Episode(
            frames={c: synthetic_frames(n, seed=seed + 10 * i + j, sharp=sharp) for j, c in enumerate(cameras)},
            state=rng.standard_normal((n, 8)).astype(np.float32),
            action=rng.uniform(-1, 1, (n, 7)).astype(np.float32),
            instruction=TASKS[i % 2],
            seed=1000 + i,
            success=bool(step_success.any()),
            step_success=step_success,
            index=i,
        ))
    return eps


@pytest.fixture
def episodes() -> list[Episode]:
    return synthetic_episodes()


@pytest.fixture
def make_episodes():
    """The `synthetic_episodes` factory."""
    return synthetic_episodes


@pytest.fixture
def make_frames():
    """The `synthetic_frames` factory."""
    return synthetic_frames
