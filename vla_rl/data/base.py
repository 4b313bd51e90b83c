"""What every episode writer and reader shares, whatever the format (LeRobot, zarr): the episode protocol
(start / add_frame / end_episode / discard_episode / close), frame validation, the output folder, the
dropped-episode count, and reader results that behave as their list of episodes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from vla_rl.data import Episode


def dropped_count(progress: dict[str, Any] | None, committed: int) -> int | None:
    """Episodes started but neither saved nor deliberately discarded (a crash or kill), None if unknown."""
    if progress is None:
        return None
    return max(0, int(progress["started"]) - int(progress["discarded"]) - committed)


def prepare_root(root: Path, overwrite: bool) -> None:
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} already exists and is not empty; pass overwrite=True to replace it")
        looks_like_dataset = any((root / p).exists() for p in ("meta", "data", ".zgroup", "vla_rl_progress.json"))
        if not looks_like_dataset:
            raise FileExistsError(f"refusing to delete {root}: it does not look like a dataset folder")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)


def check_frame(obs: dict[str, np.ndarray], action: np.ndarray, cameras: Sequence[str],
                shapes: dict[str, tuple[int, ...]], state_dim: int, action_dim: int,
                even_sides: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Validate one step for a writer: images uint8 (H, W, 3) with the camera's earlier shape, state (state_dim,),
    finite action (action_dim,). Returns copies (images, float32 state, float32 action); records new camera
    shapes in ``shapes`` only once everything passed."""
    images = {}
    for c in cameras:
        if c not in obs:
            raise KeyError(f"observation has no camera {c!r} (keys: {sorted(obs)})")
        img = np.asarray(obs[c])
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"camera {c!r} image must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
        known = shapes.get(c, img.shape)
        if img.shape != known:
            raise ValueError(f"camera {c!r} image shape {img.shape} differs from its earlier frames' {known}")
        if even_sides and (img.shape[0] % 2 or img.shape[1] % 2):
            raise ValueError(f"H.264 needs even image sides, camera {c!r} has {img.shape[1]}x{img.shape[0]}")
        images[c] = img.copy()
    if "state" not in obs or np.shape(obs["state"]) != (state_dim,):
        raise ValueError(f"obs['state'] must have shape ({state_dim},), got "
                         f"{np.shape(obs['state']) if 'state' in obs else 'nothing'}")
    state = np.array(obs["state"], dtype=np.float32)
    act = np.array(action, dtype=np.float32)
    if act.shape != (action_dim,) or not np.all(np.isfinite(act)):
        raise ValueError(f"action must be finite with shape ({action_dim},), got {act.shape}")
    for c, img in images.items():
        shapes.setdefault(c, img.shape)
    return images, state, act


class EpisodeWriter:
    """The episode protocol `vla_rl.data.lerobot.LeRobotWriter` and `vla_rl.data.zarr_buffer.ZarrWriter`
    share: one open episode buffered in memory, progress counters (episodes started / saved / discarded),
    ``close`` and ``with``.

    A subclass sets ``root``, ``cameras``, ``state_dim`` and ``action_dim``, calls `_init_episodes` in its
    ``__init__``, and defines ``num_episodes``, ``num_frames``, `_write_progress` and ``end_episode`` (which
    takes the episode with `_pending_episode` and, once it is committed, calls `_episode_saved`).
    """

    _even_sides = False  # whether frames must have even sides

    def _init_episodes(self) -> None:
        self._image_shapes: dict[str, tuple[int, ...]] = {}
        self._progress = {"started": 0, "saved": 0, "discarded": 0, "open": False, "closed": False,
                          "pid": os.getpid()}
        self._buf: dict[str, Any] | None = None
        self._closed = False

    @property
    def num_episodes(self) -> int:
        """Episodes committed so far."""
        raise NotImplementedError

    @property
    def num_frames(self) -> int:
        """Frames of the committed episodes."""
        raise NotImplementedError

    def start(self, task: str, seed: int | None = None) -> int:
        """Open a new episode for the language instruction ``task``; returns its would-be index."""
        self._check_open()
        if self._buf is not None:
            raise RuntimeError("an episode is already open: call end_episode() or discard_episode() first")
        self._buf = {"task": self._task_text(task), "seed": seed, "frames": {c: [] for c in self.cameras},
                     "state": [], "action": [], "success": []}
        self._progress["started"] += 1
        self._progress["open"] = True
        self._write_progress()
        return self.num_episodes

    def add_frame(self, obs: dict[str, np.ndarray], action: np.ndarray, success: bool = False) -> None:
        """Append one control step: ``obs`` before the action (camera -> uint8 (H, W, 3), ``"state"`` -> (D,)),
        the float (7,) action, and whether the task was solved after it."""
        if self._buf is None:
            raise RuntimeError("no open episode: call start(task) first")
        images, state, act = check_frame(obs, action, self.cameras, self._image_shapes, self.state_dim,
                                         self.action_dim, even_sides=self._even_sides)
        for c, img in images.items():
            self._buf["frames"][c].append(img)
        self._buf["state"].append(state)
        self._buf["action"].append(act)
        self._buf["success"].append(bool(success))

    def discard_episode(self) -> None:
        """Drop the open episode on purpose (e.g. a failed demo); it is counted as discarded."""
        if self._buf is None:
            raise RuntimeError("no open episode to discard")
        self._buf = None
        self._progress["discarded"] += 1
        self._progress["open"] = False
        self._write_progress()

    def close(self) -> dict[str, Any]:
        """Finish recording (an episode still open is not saved and counts as dropped); returns a summary."""
        if not self._closed:
            self._buf = None
            self._progress["closed"] = True
            self._write_progress()
            self._closed = True
        return {"root": str(self.root), "episodes": self.num_episodes, "frames": self.num_frames,
                "started": self._progress["started"], "discarded": self._progress["discarded"],
                "dropped": dropped_count(self._progress, self.num_episodes)}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- for subclasses ----
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the writer is closed")

    def _task_text(self, task: str) -> str:
        """The instruction stored for ``task`` (a subclass may validate it)."""
        return str(task)

    def _pending_episode(self, seed: int | None) -> tuple[dict[str, Any], int, int | None]:
        """The open episode to commit: (its buffer, its length, ``seed`` or else the one given to `start`)."""
        if self._buf is None:
            raise RuntimeError("no open episode: call start(task) first")
        buf = self._buf
        length = len(buf["action"])
        if length == 0:
            raise ValueError("the episode has no frames; add_frame() at least once or discard_episode()")
        return buf, length, buf["seed"] if seed is None else seed

    def _episode_saved(self) -> None:
        """Count the open episode as saved (call once it is committed) and record the progress."""
        self._buf = None
        self._progress["saved"] += 1
        self._progress["open"] = False
        self._write_progress()

    def _write_progress(self) -> None:
        raise NotImplementedError


class EpisodeList:
    """Reader results (`vla_rl.data.lerobot.LeRobotData`, `vla_rl.data.zarr_buffer.ZarrData`) behave as their
    ``episodes`` list."""

    episodes: list[Episode]

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self) -> Iterator[Episode]:
        return iter(self.episodes)

    def __getitem__(self, i: int) -> Episode:
        return self.episodes[i]
