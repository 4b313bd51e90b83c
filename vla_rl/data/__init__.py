"""Demonstration datasets: record episodes from the sims, write and read them in standard formats.

* `vla_rl.data.lerobot`: LeRobot v3.0 datasets (parquet + mp4), crash-safe writer and a validating reader.
* `vla_rl.data.zarr_buffer`: diffusion-policy's zarr replay buffer (``data/*`` + ``meta/episode_ends``).
* `vla_rl.data.hdf5`: import robomimic / LIBERO HDF5 demo files.
* `vla_rl.data.recorder`: ``collect`` episodes from a task with the expert or a learned policy.
* `vla_rl.data.dataset`: a torch ``Dataset`` of (images, state, action chunk, instruction) for SFT.

Every reader returns `Episode` objects; every error about a file on disk is a `DatasetError` whose
message starts with the file's path and says what is wrong with it.

Submodules import their heavy dependencies (pyarrow, av, zarr, h5py, torch) only when used; the
names below are loaded on first access.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class DatasetError(ValueError):
    """A dataset file that cannot be used: missing, truncated, wrong columns or dtypes, counts that disagree.

    The message names the file (or folder) and the problem.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass
class Episode:
    """One recorded episode, T control steps long.

    Attributes:
        frames: camera name -> uint8 (T, H, W, 3), the image seen *before* each action.
        state: float32 (T, D) proprioception before each action (D = 8 for the MuJoCo arm).
        action: float32 (T, 7) the action executed at each step.
        instruction: the language instruction of the episode.
        seed: the env seed that reproduces the initial state, or None if unknown (imported data).
        success: whether the episode ended in success.
        step_success: bool (T,) success reached after each step (``next.success``), or None if unknown.
        index: the episode's index in its dataset.
    """

    frames: dict[str, np.ndarray]
    state: np.ndarray
    action: np.ndarray
    instruction: str
    seed: int | None = None
    success: bool = False
    step_success: np.ndarray | None = None
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.action.shape[0])

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self.frames)


_LAZY = {
    "LeRobotWriter": "vla_rl.data.lerobot",
    "LeRobotReader": "vla_rl.data.lerobot",
    "LeRobotData": "vla_rl.data.lerobot",
    "read_lerobot": "vla_rl.data.lerobot",
    "write_lerobot": "vla_rl.data.lerobot",
    "ZarrWriter": "vla_rl.data.zarr_buffer",
    "read_zarr": "vla_rl.data.zarr_buffer",
    "read_hdf5": "vla_rl.data.hdf5",
    "import_hdf5": "vla_rl.data.hdf5",
    "collect": "vla_rl.data.recorder",
    "SFTDataset": "vla_rl.data.dataset",
}

__all__ = ["DatasetError", "Episode", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vla_rl.data' has no attribute {name!r}")
