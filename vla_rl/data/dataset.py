"""A torch ``Dataset`` over a LeRobot dataset for supervised fine-tuning (behaviour cloning) of a VLA.

Each item is one control step ``t`` of one episode::

    {"images": {camera: uint8 (H, W, 3)},       the observation at t
     "state": float32 (D,),                      proprioception at t
     "actions": float32 (T, 7),                  actions t .. t+T-1; past the episode's end the last
                                                 action is repeated
     "action_mask": bool (T,),                   True for real actions, False for the repeated padding
     "instruction": str, "episode_index": int, "frame_index": int}

State and action arrays of every episode are held in memory (small); video frames are decoded one episode
at a time and kept in a small LRU cache (per DataLoader worker), so sample episodes in blocks (or use
``shuffle`` with enough cache) when the dataset is large.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from vla_rl.data.lerobot import ACTION_KEY, STATE_KEY, LeRobotReader


class SFTDataset(Dataset):
    """(images, state, action chunk + mask, instruction) samples from the LeRobot dataset at ``root``.

    Args:
        root: a LeRobot v3.x dataset (ours, or LeRobot's own).
        chunk_size: T, the number of future actions per sample.
        cameras: cameras to return (default: all of the dataset's).
        cache_episodes: decoded episodes kept in memory per process.
    """

    def __init__(self, root: str | Path, chunk_size: int = 8, cameras: list[str] | None = None,
                 cache_episodes: int = 8) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.root = Path(root)
        self.chunk_size = int(chunk_size)
        self.reader = LeRobotReader(self.root)
        self.cameras = list(cameras) if cameras is not None else list(self.reader.cameras)
        unknown = set(self.cameras) - set(self.reader.cameras)
        if unknown:
            raise ValueError(f"unknown cameras {sorted(unknown)}; the dataset has {self.reader.cameras}")
        eps = [self.reader.episode(i, frames=False) for i in range(self.reader.num_episodes)]
        self.states = [e.state for e in eps]
        self.actions = [e.action for e in eps]
        self.instructions = [e.instruction for e in eps]
        self.lengths = np.array([len(e) for e in eps], dtype=np.int64)
        self._ends = np.cumsum(self.lengths)
        self._cache: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._cache_size = max(1, int(cache_episodes))

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def locate(self, idx: int) -> tuple[int, int]:
        """(episode, step) of the ``idx``-th sample."""
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} samples")
        ep = int(np.searchsorted(self._ends, idx, side="right"))
        return ep, int(idx - (self._ends[ep - 1] if ep else 0))

    def action_chunk(self, ep: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 (T, 7) actions t..t+T-1 of episode ``ep`` (last action repeated past the end) and the
        bool (T,) mask of real ones."""
        acts = self.actions[ep]
        idx = np.arange(t, t + self.chunk_size)
        mask = idx < len(acts)
        return acts[np.minimum(idx, len(acts) - 1)], mask

    def _frames(self, ep: int) -> dict[str, np.ndarray]:
        if ep in self._cache:
            self._cache.move_to_end(ep)
            return self._cache[ep]
        frames = self.reader.episode(ep).frames
        frames = {c: frames[c] for c in self.cameras}
        self._cache[ep] = frames
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return frames

    def __getitem__(self, idx: int) -> dict[str, Any]:
        ep, t = self.locate(int(idx))
        frames = self._frames(ep)
        actions, mask = self.action_chunk(ep, t)
        return {
            "images": {c: torch.from_numpy(np.ascontiguousarray(frames[c][t])) for c in self.cameras},
            "state": torch.from_numpy(self.states[ep][t].copy()),
            "actions": torch.from_numpy(actions),
            "action_mask": torch.from_numpy(mask),
            "instruction": self.instructions[ep],
            "episode_index": ep,
            "frame_index": t,
        }

    @property
    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        """``{"action": {...}, "state": {...}}`` with q01, q99, min, max, mean, std arrays of shape (D,), from
        ``meta/stats.json`` when it has them, else computed exactly from the loaded episodes."""
        out = {}
        for name, key, arrays in (("action", ACTION_KEY, self.actions), ("state", STATE_KEY, self.states)):
            saved = self.reader.stats.get(key, {})
            wanted = ("q01", "q99", "min", "max", "mean", "std")
            if all(k in saved for k in wanted):
                out[name] = {k: np.asarray(saved[k], dtype=np.float64) for k in wanted}
            else:
                x = np.concatenate(arrays).astype(np.float64)
                out[name] = {"q01": np.quantile(x, 0.01, axis=0), "q99": np.quantile(x, 0.99, axis=0),
                             "min": x.min(0), "max": x.max(0), "mean": x.mean(0), "std": x.std(0)}
        return out
