"""Diffusion-policy's zarr replay buffer (zarr format 2): a crash-safe episode writer and a validating reader.

Layout (what diffusion_policy's ``ReplayBuffer.copy_from_path`` / ``create_from_path`` load)::

    root/.zgroup, root/.zattrs            attrs["vla_rl"]: cameras, fps, instructions (one per episode),
                                          progress (episodes started / saved / discarded)
    root/data/<camera>   uint8   (N, H, W, 3)  chunks (1, H, W, 3), Blosc lz4 (one chunk per frame)
    root/data/state      float32 (N, 8)        chunks (1000, 8)
    root/data/action     float32 (N, 7)        chunks (1000, 7)
    root/meta/episode_ends   int64 (E,)  cumulative frame counts: episode i is rows [ends[i-1], ends[i])
    root/meta/episode_seeds  int64 (E,)  env seed of each episode (-1 when unknown)
    root/meta/episode_success bool (E,)

Crash safety: an episode is kept in memory until `ZarrWriter.end_episode`, which appends its rows to the
data arrays (and its seed/success/instruction), and only then commits ``meta/episode_ends``: the new
chunk of ``episode_ends`` is written (beyond the array's shape, so invisible) before its ``.zarray`` is
atomically rewritten with the longer shape. ``episode_ends`` therefore never points at data that is not
written. A process killed during those few milliseconds can leave data rows past ``episode_ends[-1]``;
this reader and diffusion-policy's ``ReplayBuffer`` both ignore them (it slices ``[:episode_ends[-1]]``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_rl.data import DatasetError, Episode
from vla_rl.data.base import EpisodeList, EpisodeWriter, dropped_count, prepare_root
from vla_rl.utils.io import atomic_write_bytes, fsync_dir, fsync_file

LOWDIM_CHUNK = 1000
EPISODE_ENDS_CHUNK = 4096
STATE_KEY = "state"
ACTION_KEY = "action"


def _compressor() -> Any:
    import numcodecs

    # diffusion-policy's ReplayBuffer.resolve_compressor("default")
    return numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)


class ZarrWriter(EpisodeWriter):
    """Record episodes into a diffusion-policy zarr replay buffer at ``root`` (same API as `LeRobotWriter`).

    ``start(task, seed)``, ``add_frame(obs, action, success)`` per control step (obs: camera -> uint8
    (H, W, 3) and ``"state"`` -> float32 (8,); action float32 (7,)), then ``end_episode(seed=, success=)``
    or ``discard_episode()``, and ``close()``.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        cameras: Sequence[str] = ("agentview", "wrist"),
        fps: int = 20,
        state_dim: int = 8,
        action_dim: int = 7,
        overwrite: bool = False,
        info_extra: dict[str, Any] | None = None,
    ) -> None:
        import zarr

        if not cameras:
            raise ValueError("at least one camera is needed")
        reserved = {STATE_KEY, ACTION_KEY} & set(cameras)
        if reserved:
            raise ValueError(f"camera names {sorted(reserved)} clash with the data arrays")
        self.root = Path(root)
        self.cameras = tuple(cameras)
        self.fps = int(fps)
        self.state_dim, self.action_dim = int(state_dim), int(action_dim)
        prepare_root(self.root, overwrite)
        self._group = zarr.open_group(str(self.root), mode="a", zarr_format=2)
        self._group.require_group("data")
        meta = self._group.require_group("meta")
        meta.create_array("episode_ends", shape=(0,), chunks=(EPISODE_ENDS_CHUNK,), dtype="int64",
                          compressors=None, fill_value=0)
        self._init_episodes()
        self._attrs: dict[str, Any] = {"format": "diffusion_policy_replay_buffer", "cameras": list(self.cameras),
                                       "fps": self.fps, **(info_extra or {}), "instructions": [],
                                       "progress": self._progress}
        self._ends: list[int] = []
        self._write_attrs()

    @property
    def num_episodes(self) -> int:
        return len(self._ends)

    @property
    def num_frames(self) -> int:
        return self._ends[-1] if self._ends else 0

    def end_episode(self, seed: int | None = None, success: bool | None = None) -> int:
        """Append the open episode's rows, then commit ``episode_ends``; returns the episode index."""
        buf, length, seed = self._pending_episode(seed)
        success = bool(any(buf["success"])) if success is None else bool(success)
        ep = len(self._ends)
        start = self.num_frames
        end = start + length
        arrays = {c: np.stack(buf["frames"][c]) for c in self.cameras}
        arrays[STATE_KEY] = np.stack(buf["state"])
        arrays[ACTION_KEY] = np.stack(buf["action"])

        data = self._group["data"]
        for key, values in arrays.items():
            if key not in data:
                chunks = (1, *values.shape[1:]) if values.ndim == 4 else (LOWDIM_CHUNK, *values.shape[1:])
                data.create_array(key, shape=(0, *values.shape[1:]), chunks=chunks, dtype=values.dtype,
                                  compressors=_compressor(), fill_value=0)
            arr = data[key]
            arr.resize((end, *values.shape[1:]))
            arr[start:end] = values
        meta = self._group["meta"]
        for key, value, dtype in (("episode_seeds", -1 if seed is None else int(seed), "int64"),
                                  ("episode_success", success, "bool")):
            if key not in meta:
                meta.create_array(key, shape=(0,), chunks=(EPISODE_ENDS_CHUNK,), dtype=dtype, compressors=None,
                                  fill_value=0 if dtype == "int64" else False)
            arr = meta[key]
            arr.resize((ep + 1,))
            arr[ep] = value
        self._attrs["instructions"] = [*self._attrs["instructions"][:ep], buf["task"]]
        self._write_attrs()
        self._fsync_rows(start, end)
        self._commit_episode_end(end)
        self._episode_saved()
        return ep

    # ---- internals ----
    def _write_progress(self) -> None:
        self._write_attrs()

    def _write_attrs(self) -> None:
        """Rewrite the root ``.zattrs`` (our metadata and progress) atomically."""
        atomic_write_bytes(self.root / ".zattrs", json.dumps({"vla_rl": self._attrs}, indent=2).encode())

    def _fsync_rows(self, start: int, end: int) -> None:
        """Flush the chunk files holding rows [start, end) of every data array, and the meta arrays."""
        for key in (*self.cameras, STATE_KEY, ACTION_KEY):
            folder = self.root / "data" / key
            ndim = 4 if key in self.cameras else 2
            chunk_len = 1 if key in self.cameras else LOWDIM_CHUNK
            for k in range(start // chunk_len, (end - 1) // chunk_len + 1):
                path = folder / ".".join([str(k)] + ["0"] * (ndim - 1))
                if path.exists():
                    fsync_file(path)
            fsync_file(folder / ".zarray")
            fsync_dir(folder)
        for key in ("episode_seeds", "episode_success"):
            for p in (self.root / "meta" / key).iterdir():
                fsync_file(p)

    def _commit_episode_end(self, end: int) -> None:
        """Append ``end`` to meta/episode_ends atomically: chunk first (past the shape), then .zarray."""
        folder = self.root / "meta" / "episode_ends"
        ends = [*self._ends, end]
        k = (len(ends) - 1) // EPISODE_ENDS_CHUNK
        chunk = np.zeros(EPISODE_ENDS_CHUNK, dtype="<i8")
        tail = ends[k * EPISODE_ENDS_CHUNK:]
        chunk[: len(tail)] = tail
        atomic_write_bytes(folder / str(k), chunk.tobytes())  # compressor None: raw little-endian int64
        meta = json.loads((folder / ".zarray").read_text())
        meta["shape"] = [len(ends)]
        atomic_write_bytes(folder / ".zarray", json.dumps(meta, indent=2).encode())
        fsync_dir(folder)
        self._ends = ends


@dataclass
class ZarrData(EpisodeList):
    """What `read_zarr` returns: episodes and counts (``dropped`` None without a progress file)."""

    root: Path
    episodes: list[Episode]
    episode_ends: np.ndarray
    cameras: list[str]
    dropped: int | None = None
    discarded: int = 0
    uncommitted_rows: int = 0


def read_zarr(root: str | Path, frames: bool = True) -> ZarrData:
    """Read and validate a diffusion-policy zarr replay buffer into `Episode` objects.

    Cameras are the 4-D uint8 arrays under ``data/`` (images (T, H, W, 3)); ``state`` (T, D) and
    ``action`` (T, 7) must be float32. Instructions/seeds/success come from our extra metadata when
    present (else "", None, False).

    Raises:
        DatasetError: naming the array or file and the problem (missing arrays, wrong dtypes, episode_ends
            not increasing or pointing past the data, unreadable chunks).
    """
    root = Path(root)
    group = _open_group(root)
    ends = _episode_ends(group, root)
    n = int(ends[-1]) if len(ends) else 0
    data, meta = group["data"], group["meta"]
    attrs = dict(group.attrs.get("vla_rl", {}))
    progress = attrs.get("progress")
    if progress is not None and not all(isinstance(progress.get(k), int) for k in ("started", "discarded")):
        raise DatasetError(root / ".zattrs", "vla_rl.progress needs integer 'started' and 'discarded'")
    cameras = list(attrs.get("cameras") or [k for k in sorted(data.array_keys())
                                            if data[k].ndim == 4 and data[k].dtype == np.uint8])
    keys = [*cameras, STATE_KEY, ACTION_KEY] if n else []
    _check_data_arrays(data, keys, cameras, n, root)
    uncommitted = max((data[k].shape[0] - n for k in keys), default=0)
    seeds = _load_array(meta, "episode_seeds", root / "meta" / "episode_seeds") if "episode_seeds" in meta else None
    succ = _load_array(meta, "episode_success", root / "meta" / "episode_success") \
        if "episode_success" in meta else None
    columns = {k: _load_array(data, k, root / "data" / k, n) for k in keys if frames or k not in cameras}
    episodes = _split_episodes(columns, ends, cameras, list(attrs.get("instructions", [])), seeds, succ)
    return ZarrData(root=root, episodes=episodes, episode_ends=ends, cameras=cameras,
                    dropped=dropped_count(progress, len(ends)),
                    discarded=int(progress["discarded"]) if progress else 0, uncommitted_rows=uncommitted)


def _open_group(root: Path) -> Any:
    """The replay buffer's root group, opened read-only, with its ``data/`` and ``meta/`` groups checked."""
    import zarr

    if not (root / ".zgroup").is_file():
        raise DatasetError(root, "not a zarr v2 group (no .zgroup): not a diffusion-policy replay buffer")
    try:
        group = zarr.open_group(str(root), mode="r", zarr_format=2)
    except Exception as e:
        raise DatasetError(root, f"cannot open as a zarr v2 group ({e})") from None
    for sub in ("data", "meta"):
        if sub not in group:
            raise DatasetError(root / sub, "missing group (a replay buffer has data/ and meta/)")
    return group


def _episode_ends(group: Any, root: Path) -> np.ndarray:
    """``meta/episode_ends``, checked: 1-D integers, strictly increasing and positive."""
    path = root / "meta" / "episode_ends"
    if "episode_ends" not in group["meta"]:
        raise DatasetError(path, "missing array")
    ends = _load_array(group["meta"], "episode_ends", path)
    if ends.ndim != 1 or not np.issubdtype(ends.dtype, np.integer):
        raise DatasetError(path, f"must be 1-D integers, got {ends.dtype} {ends.shape}")
    if len(ends) and (ends[0] <= 0 or np.any(np.diff(ends) <= 0)):
        raise DatasetError(path, "must be strictly increasing positive frame counts")
    return ends


def _check_data_arrays(data: Any, keys: list[str], cameras: list[str], n: int, root: Path) -> None:
    """Each of ``keys`` exists under ``data/`` with the right dtype and shape, and holds at least ``n`` rows."""
    for key in keys:
        path = root / "data" / key
        if key not in data:
            raise DatasetError(path, f"missing array (buffer has {sorted(data.array_keys())})")
        arr = data[key]
        if key in cameras:
            if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
                raise DatasetError(path, f"images must be uint8 (N, H, W, 3), got {arr.dtype} {arr.shape}")
        elif arr.dtype != np.float32 or arr.ndim != 2:
            raise DatasetError(path, f"must be float32 (N, D), got {arr.dtype} {arr.shape}")
        if arr.shape[0] < n:
            raise DatasetError(path, f"holds {arr.shape[0]} rows but meta/episode_ends[-1] = {n}")


def _split_episodes(columns: dict[str, np.ndarray], ends: np.ndarray, cameras: list[str], instructions: list[str],
                    seeds: np.ndarray | None, succ: np.ndarray | None) -> list[Episode]:
    """Cut the data arrays' rows into episodes at ``ends``; missing extra metadata reads as "", None, False."""
    episodes = []
    starts = np.concatenate([[0], ends[:-1]]).astype(int)
    for i, (a, b) in enumerate(zip(starts, ends.astype(int), strict=True)):
        seed = int(seeds[i]) if seeds is not None and i < len(seeds) and seeds[i] >= 0 else None
        episodes.append(Episode(
            frames={c: columns[c][a:b] for c in cameras if c in columns},
            state=columns[STATE_KEY][a:b], action=columns[ACTION_KEY][a:b],
            instruction=instructions[i] if i < len(instructions) else "",
            seed=seed, success=bool(succ[i]) if succ is not None and i < len(succ) else False, index=i))
    return episodes


def _load_array(group: Any, key: str, path: Path, n: int | None = None) -> np.ndarray:
    try:
        arr = group[key]
        return np.asarray(arr[:n] if n is not None else arr[:])
    except Exception as e:  # zarr/numcodecs raise assorted errors on corrupt chunks
        raise DatasetError(path, f"cannot read the array, corrupt chunk? ({e})") from None
