"""LeRobot v3.0 datasets: a crash-safe episode writer and a validating reader (no ``lerobot`` import).

Layout written (``fps`` 20, one chunk folder per 1000 files)::

    meta/info.json                      codebase_version "v3.0", totals, paths, features (dtype/shape/names)
    meta/stats.json                     per feature: min, max, mean, std, count, q01, q10, q50, q90, q99
    meta/tasks.parquet                  task_index + the task text as the (pandas) index
    meta/episodes/chunk-000/file-000.parquet   one row per episode (see `LeRobotWriter`)
    meta/vla_rl_progress.json           ours: episodes started / saved / discarded (LeRobot ignores it)
    data/chunk-CCC/file-FFF.parquet     one file per episode: state, action, next.success, indices
    videos/observation.images.<camera>/chunk-CCC/file-FFF.mp4   one H.264 file per episode and camera

Features: ``observation.images.agentview`` / ``observation.images.wrist`` (video, (H, W, 3)),
``observation.state`` (float32, (8,)), ``action`` (float32, (7,)), ``next.success`` (bool: success
reached after the step's action), and LeRobot's ``timestamp`` (float32), ``frame_index``,
``episode_index``, ``index``, ``task_index`` (int64). The episode's env ``seed`` and ``success`` are
extra columns of the episodes table.

Crash safety. Each episode is held in memory until `LeRobotWriter.end_episode`, which writes, in order,
the videos, the data file, then the metadata (tasks, episodes, stats, and last ``info.json``, the commit
point); every file is written to a temporary name, fsynced and renamed, so each is either the old or the
new version. ``info.json``'s ``total_episodes`` is what readers trust: files of an episode that was being
written when the process died are never referenced (and sort after every committed file, so LeRobot's
loader, which reads every ``data/*/*.parquet``, still indexes only committed frames). A process killed
mid-episode leaves every completed episode loadable by `read_lerobot` and by LeRobot's ``LeRobotDataset``;
the progress file lets the reader say how many started episodes were dropped.

Video: one file per episode and camera (``from_timestamp`` 0), H.264 via PyAV. With ``lossless=True``
(the default) the frames are RGB H.264 at qp 0 and decode bit-exact (LeRobot's torchcodec decoder reads
them; pix_fmt ``gbrp``); ``lossless=False`` writes yuv420p crf 20, about 8x smaller but lossy
(chroma subsampling: errors up to ~100 at sharp colour edges, mean ~2).

Statistics are exact (numpy, float64, linear-interpolated quantiles) over every frame, not LeRobot's
sampled and histogram-approximated ones; images per channel on the [0, 1] scale with shape (3, 1, 1)
and ``count`` = number of frames, as LeRobot writes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from vla_rl.data import DatasetError, Episode
from vla_rl.utils.io import atomic_write_json

CODEBASE_VERSION = "v3.0"
DEFAULT_FPS = 20
CHUNKS_SIZE = 1000  # files per chunk folder, as LeRobot
DATA_FILES_SIZE_IN_MB = 100
VIDEO_FILES_SIZE_IN_MB = 200
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
PROGRESS_PATH = "meta/vla_rl_progress.json"

STATE_KEY = "observation.state"
ACTION_KEY = "action"
SUCCESS_KEY = "next.success"
IMAGE_PREFIX = "observation.images."
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STATE_NAMES = ("tcp_x", "tcp_y", "tcp_z", "tcp_rx", "tcp_ry", "tcp_rz", "finger_left", "finger_right")
ACTION_NAMES = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")
SCALAR_FEATURES = {  # LeRobot's default per-frame columns
    "timestamp": "float32",
    "frame_index": "int64",
    "episode_index": "int64",
    "index": "int64",
    "task_index": "int64",
}
EPISODE_COLUMNS = ("episode_index", "length", "dataset_from_index", "dataset_to_index",
                   "data/chunk_index", "data/file_index")


def image_key(camera: str) -> str:
    """LeRobot feature key of a camera: ``"agentview"`` -> ``"observation.images.agentview"``."""
    return IMAGE_PREFIX + camera


def chunk_file(n: int, chunks_size: int = CHUNKS_SIZE) -> tuple[int, int]:
    """(chunk_index, file_index) of the ``n``-th file, ``chunks_size`` files per chunk folder."""
    return divmod(int(n), chunks_size)


# ---- statistics --------------------------------------------------------------------------------


def vector_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Exact per-dimension statistics of ``values`` (N, D) or (N,) (then D = 1).

    Returns min/max in the input dtype, mean/std/quantiles in float64, each of shape (D,), and
    count (1,) = N, as LeRobot's ``stats.json`` stores them.
    """
    x = np.asarray(values)
    if x.ndim == 1:
        x = x[:, None]
    f = x.astype(np.float64)
    out: dict[str, np.ndarray] = {
        "min": x.min(axis=0),
        "max": x.max(axis=0),
        "mean": f.mean(axis=0),
        "std": f.std(axis=0),
        "count": np.array([x.shape[0]], dtype=np.int64),
    }
    qs = np.quantile(f, list(QUANTILES.values()), axis=0)
    for name, q in zip(QUANTILES, qs, strict=True):
        out[name] = q
    return out


def channel_histogram(frames: np.ndarray) -> np.ndarray:
    """int64 (3, 256) pixel-value counts per channel of uint8 frames (T, H, W, 3)."""
    return np.stack([np.bincount(frames[..., c].ravel(), minlength=256) for c in range(3)]).astype(np.int64)


def image_stats(hist: np.ndarray, num_frames: int) -> dict[str, np.ndarray]:
    """Exact per-channel statistics on the [0, 1] scale from a (3, 256) histogram of uint8 pixels.

    Equal to numpy's mean/std/min/max/quantile (linear) over ``frames[..., c] / 255`` for each channel;
    every value has shape (3, 1, 1), count is (1,) = ``num_frames`` (LeRobot's convention).
    """
    hist = np.asarray(hist, dtype=np.int64)
    v = np.arange(256, dtype=np.float64) / 255.0
    n = hist.sum(axis=1)
    mean = (hist * v).sum(axis=1) / n
    std = np.sqrt((hist * (v[None] - mean[:, None]) ** 2).sum(axis=1) / n)
    present = hist > 0
    lo_val = np.argmax(present, axis=1)
    hi_val = 255 - np.argmax(present[:, ::-1], axis=1)
    out: dict[str, np.ndarray] = {"min": v[lo_val], "max": v[hi_val], "mean": mean, "std": std}
    cum = np.cumsum(hist, axis=1)
    for name, q in QUANTILES.items():
        vals = []
        for c in range(3):
            pos = q * (n[c] - 1)
            lo = int(np.floor(pos))
            hi = min(lo + 1, int(n[c]) - 1)
            a = v[np.searchsorted(cum[c], lo, side="right")]
            b = v[np.searchsorted(cum[c], hi, side="right")]
            t = pos - lo
            vals.append(a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t))  # numpy's lerp
        out[name] = np.array(vals)
    stats = {k: val.reshape(3, 1, 1) for k, val in out.items()}
    stats["count"] = np.array([num_frames], dtype=np.int64)
    return stats


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {feat: {k: np.asarray(v).tolist() for k, v in s.items()} for feat, s in stats.items()}


# ---- file helpers ------------------------------------------------------------------------------


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories; rename stays atomic
        _fsync_file(path)


def _write_parquet(table: Any, path: Path) -> None:
    """Write a pyarrow table atomically: temp name (never ``*.parquet``), fsync, rename."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pq.write_table(table, tmp, compression="snappy")
    _fsync_file(tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _read_parquet(path: Path, what: str) -> Any:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DatasetError(path, f"missing ({what})")
    try:
        return pq.read_table(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for truncated or foreign files
        raise DatasetError(path, f"not a readable parquet file, truncated or corrupt? ({e})") from None


def _tasks_table(tasks: Sequence[str]) -> Any:
    """``meta/tasks.parquet`` as pandas writes LeRobot's ``DataFrame({"task_index": ...}, index=tasks)``."""
    import pyarrow as pa

    table = pa.table({
        "task_index": pa.array(range(len(tasks)), type=pa.int64()),
        "__index_level_0__": pa.array(list(tasks), type=pa.large_string()),
    })
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _fixed_list(values: np.ndarray, dtype: Any) -> Any:
    import pyarrow as pa

    values = np.ascontiguousarray(values)
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=dtype), values.shape[1])


def _video_info(path: Path, fps: int) -> dict[str, Any]:
    """The ``info`` block LeRobot keeps for a video feature, probed from an encoded file."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec_context.codec.canonical_name,
            "video.pix_fmt": stream.codec_context.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(fps),
            "video.channels": 3,
            "has_audio": False,
        }


def _load_progress(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(path, f"not valid JSON ({e})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), int) for k in ("started", "discarded")):
        raise DatasetError(path, "expected a JSON object with integer 'started' and 'discarded'")
    return data


def dropped_count(progress: dict[str, Any] | None, committed: int) -> int | None:
    """Episodes started but neither saved nor deliberately discarded (a crash or kill), None if unknown."""
    if progress is None:
        return None
    return max(0, int(progress["started"]) - int(progress["discarded"]) - committed)


def _prepare_root(root: Path, overwrite: bool) -> None:
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


# ---- writer ------------------------------------------------------------------------------------


class _EpisodeWriter:
    """The episode protocol `LeRobotWriter` and `vla_rl.data.zarr_buffer.ZarrWriter` share: one open episode
    buffered in memory, progress counters (episodes started / saved / discarded), ``close`` and ``with``.

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


class LeRobotWriter(_EpisodeWriter):
    """Record episodes into a LeRobot v3.0 dataset at ``root``, one durable episode at a time.

    Usage::

        with LeRobotWriter("demos/pick", cameras=("agentview", "wrist")) as w:
            w.start(task="pick up the red cube", seed=7)
            for ...:
                w.add_frame(obs, action, success)       # obs: camera -> uint8 (H, W, 3), "state" -> (8,)
            w.end_episode(seed=7, success=True)         # or w.discard_episode()

    Each row of ``meta/episodes/chunk-000/file-000.parquet`` holds ``episode_index``, ``tasks`` (list of
    str), ``length``, ``data/chunk_index``, ``data/file_index``, ``dataset_from_index``,
    ``dataset_to_index``, ``videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp}`` per camera,
    ``stats/<feature>/<stat>`` (the episode's statistics, as LeRobot writes them),
    ``meta/episodes/chunk_index``, ``meta/episodes/file_index``, and ours: ``seed`` (int64, null when
    unknown) and ``success`` (bool).
    """

    _even_sides = True  # H.264

    def __init__(
        self,
        root: str | Path,
        *,
        cameras: Sequence[str] = ("agentview", "wrist"),
        fps: int = DEFAULT_FPS,
        lossless: bool = True,
        state_names: Sequence[str] = STATE_NAMES,
        action_names: Sequence[str] = ACTION_NAMES,
        robot_type: str | None = "vla_rl_mujoco_arm",
        overwrite: bool = False,
        info_extra: dict[str, Any] | None = None,
    ) -> None:
        if not cameras:
            raise ValueError("at least one camera is needed")
        self.root = Path(root)
        self.cameras = tuple(cameras)
        self.fps = int(fps)
        self.lossless = lossless
        self.state_names = list(state_names)
        self.action_names = list(action_names)
        self.robot_type = robot_type
        self.info_extra = dict(info_extra or {})
        _prepare_root(self.root, overwrite)
        self._init_episodes()
        self._video_info: dict[str, dict[str, Any]] = {}
        self._rows: list[dict[str, Any]] = []
        self._tasks: dict[str, int] = {}
        self._total_frames = 0
        self._columns: dict[str, list[np.ndarray]] = {}
        self._hist = {c: np.zeros((3, 256), dtype=np.int64) for c in self.cameras}
        self._write_progress()

    # ---- public API ----
    @property
    def num_episodes(self) -> int:
        """Episodes committed so far."""
        return len(self._rows)

    @property
    def num_frames(self) -> int:
        return self._total_frames

    @property
    def state_dim(self) -> int:
        return len(self.state_names)

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def end_episode(self, seed: int | None = None, success: bool | None = None) -> int:
        """Write the open episode durably and commit it; returns its episode index.

        ``seed`` overrides the one given to `start`; ``success`` defaults to "any step succeeded".
        """
        buf, length, seed = self._pending_episode(seed)
        step_success = np.array(buf["success"], dtype=bool)
        success = bool(step_success.any()) if success is None else bool(success)
        ep = len(self._rows)
        chunk, file = chunk_file(ep)
        start = self._total_frames
        tasks = dict(self._tasks)
        task_index = tasks.setdefault(buf["task"], len(tasks))

        columns = {
            STATE_KEY: np.stack(buf["state"]),
            ACTION_KEY: np.stack(buf["action"]),
            SUCCESS_KEY: step_success,
            "timestamp": (np.arange(length) / self.fps).astype(np.float32),
            "frame_index": np.arange(length, dtype=np.int64),
            "episode_index": np.full(length, ep, dtype=np.int64),
            "index": np.arange(start, start + length, dtype=np.int64),
            "task_index": np.full(length, task_index, dtype=np.int64),
        }
        frames = {c: np.stack(buf["frames"][c]) for c in self.cameras}
        hists = {c: channel_histogram(frames[c]) for c in self.cameras}

        # 1. videos, 2. data: files nothing references until info.json is rewritten below
        row: dict[str, Any] = {"episode_index": ep, "tasks": [buf["task"]], "length": length,
                               "data/chunk_index": chunk, "data/file_index": file,
                               "dataset_from_index": start, "dataset_to_index": start + length}
        video_info = dict(self._video_info)
        for c in self.cameras:
            key = image_key(c)
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            self._write_video(path, frames[c])
            if key not in video_info:
                video_info[key] = _video_info(path, self.fps)
            row[f"videos/{key}/chunk_index"] = chunk
            row[f"videos/{key}/file_index"] = file
            row[f"videos/{key}/from_timestamp"] = 0.0
            row[f"videos/{key}/to_timestamp"] = length / self.fps
        _write_parquet(self._data_table(columns), self.root / DATA_PATH.format(chunk_index=chunk, file_index=file))

        # 3. metadata, info.json last (the commit point)
        ep_stats = {image_key(c): image_stats(hists[c], length) for c in self.cameras}
        ep_stats.update({k: vector_stats(v) for k, v in columns.items()})
        for feat, s in ep_stats.items():
            for name, val in s.items():
                row[f"stats/{feat}/{name}"] = np.asarray(val).tolist()
        row["meta/episodes/chunk_index"] = 0
        row["meta/episodes/file_index"] = 0
        row["seed"] = None if seed is None else int(seed)
        row["success"] = success
        rows = [*self._rows, row]
        if len(tasks) != len(self._tasks):
            _write_parquet(_tasks_table(list(tasks)), self.root / TASKS_PATH)
        _write_parquet(self._episodes_table(rows), self.root / EPISODES_PATH)
        new_columns = {k: [*self._columns.get(k, []), v] for k, v in columns.items()}
        new_hist = {c: self._hist[c] + hists[c] for c in self.cameras}
        total = start + length
        stats = {image_key(c): image_stats(new_hist[c], total) for c in self.cameras}
        stats.update({k: vector_stats(np.concatenate(v)) for k, v in new_columns.items()})
        atomic_write_json(self.root / STATS_PATH, _jsonable(stats))
        atomic_write_json(self.root / INFO_PATH, self._info(len(rows), total, len(tasks), video_info))

        # committed: update the in-memory state, then the progress file
        self._rows, self._tasks, self._columns, self._hist = rows, tasks, new_columns, new_hist
        self._total_frames, self._video_info = total, video_info
        self._episode_saved()
        return ep

    # ---- internals ----
    def _task_text(self, task: str) -> str:
        if not isinstance(task, str) or not task:
            raise ValueError(f"task must be a non-empty instruction string, got {task!r}")
        return task

    def _write_progress(self) -> None:
        atomic_write_json(self.root / PROGRESS_PATH, self._progress)

    def _write_video(self, path: Path, frames: np.ndarray) -> None:
        from vla_rl.utils.video import write_mp4

        write_mp4(path, frames, fps=self.fps, lossless=self.lossless)
        _fsync_file(path)
        _fsync_dir(path.parent)

    def _data_table(self, columns: dict[str, np.ndarray]) -> Any:
        import pyarrow as pa

        table = {
            STATE_KEY: _fixed_list(columns[STATE_KEY], pa.float32()),
            ACTION_KEY: _fixed_list(columns[ACTION_KEY], pa.float32()),
            SUCCESS_KEY: pa.array(columns[SUCCESS_KEY], type=pa.bool_()),
        }
        for name, dtype in SCALAR_FEATURES.items():
            table[name] = pa.array(columns[name], type=pa.float32() if dtype == "float32" else pa.int64())
        return pa.table(table)

    def _episodes_table(self, rows: list[dict[str, Any]]) -> Any:
        import pyarrow as pa

        types = {"episode_index": pa.int64(), "tasks": pa.list_(pa.string()), "length": pa.int64(),
                 "data/chunk_index": pa.int64(), "data/file_index": pa.int64(),
                 "dataset_from_index": pa.int64(), "dataset_to_index": pa.int64(),
                 "meta/episodes/chunk_index": pa.int64(), "meta/episodes/file_index": pa.int64(),
                 "seed": pa.int64(), "success": pa.bool_()}
        for c in self.cameras:
            key = image_key(c)
            types.update({f"videos/{key}/chunk_index": pa.int64(), f"videos/{key}/file_index": pa.int64(),
                          f"videos/{key}/from_timestamp": pa.float64(), f"videos/{key}/to_timestamp": pa.float64()})
        return pa.table({k: pa.array([r[k] for r in rows], type=types.get(k)) for k in rows[0]})

    def _features(self, video_info: dict[str, dict[str, Any]]) -> dict[str, Any]:
        feats: dict[str, Any] = {}
        for c in self.cameras:
            key = image_key(c)
            feats[key] = {"dtype": "video", "shape": list(self._image_shapes[c]),
                          "names": ["height", "width", "channels"], "info": video_info[key]}
        feats[STATE_KEY] = {"dtype": "float32", "shape": [len(self.state_names)], "names": self.state_names}
        feats[ACTION_KEY] = {"dtype": "float32", "shape": [len(self.action_names)], "names": self.action_names}
        feats[SUCCESS_KEY] = {"dtype": "bool", "shape": [1], "names": None}
        for name, dtype in SCALAR_FEATURES.items():
            feats[name] = {"dtype": dtype, "shape": [1], "names": None}
        return feats

    def _info(self, episodes: int, frames: int, tasks: int, video_info: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": episodes,
            "total_frames": frames,
            "total_tasks": tasks,
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
            "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
            "fps": self.fps,
            "splits": {"train": f"0:{episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": self._features(video_info),
            "vla_rl": {"lossless_video": self.lossless, **self.info_extra},
        }


def write_lerobot(root: str | Path, episodes: Iterable[Episode], **writer_kwargs: Any) -> dict[str, Any]:
    """Write `Episode` objects to a new LeRobot dataset; ``writer_kwargs`` go to `LeRobotWriter`
    (cameras default to the first episode's). Returns the writer's summary."""
    it = iter(episodes)
    first = next(it, None)
    if first is None:
        raise ValueError("no episodes to write")
    writer_kwargs.setdefault("cameras", first.cameras)
    writer_kwargs.setdefault("state_names", [f"state_{i}" for i in range(first.state.shape[1])]
                             if first.state.shape[1] != len(STATE_NAMES) else STATE_NAMES)
    with LeRobotWriter(root, **writer_kwargs) as w:
        for ep in _chain(first, it):
            w.start(ep.instruction, seed=ep.seed)
            succ = ep.step_success if ep.step_success is not None else np.zeros(len(ep), dtype=bool)
            for t in range(len(ep)):
                obs = {c: ep.frames[c][t] for c in w.cameras}
                obs["state"] = ep.state[t]
                w.add_frame(obs, ep.action[t], bool(succ[t]))
            w.end_episode(seed=ep.seed, success=ep.success)
        return w.close()


def _chain(first: Episode, rest: Iterator[Episode]) -> Iterator[Episode]:
    yield first
    yield from rest


# ---- reader ------------------------------------------------------------------------------------


class _EpisodeList:
    """Reader results (`LeRobotData`, `vla_rl.data.zarr_buffer.ZarrData`) behave as their ``episodes`` list."""

    episodes: list[Episode]

    def __len__(self) -> int:
        return len(self.episodes)

    def __iter__(self) -> Iterator[Episode]:
        return iter(self.episodes)

    def __getitem__(self, i: int) -> Episode:
        return self.episodes[i]


@dataclass
class LeRobotData(_EpisodeList):
    """What `read_lerobot` returns: the committed episodes and the dataset's metadata.

    ``dropped`` counts episodes started but never saved (a crash or kill; None if the dataset has no
    progress file, e.g. one written by LeRobot itself); ``discarded`` those dropped on purpose.
    """

    root: Path
    info: dict[str, Any]
    stats: dict[str, Any]
    tasks: list[str]
    episodes: list[Episode]
    dropped: int | None = None
    discarded: int = 0
    progress: dict[str, Any] | None = None
    uncommitted: int = 0

    @property
    def num_frames(self) -> int:
        return sum(len(e) for e in self.episodes)


@dataclass
class _DataCache:
    path: Path | None = None
    table: Any = None
    video_path: Path | None = None
    video: np.ndarray | None = None


class LeRobotReader:
    """Validating random-access reader of a LeRobot v3.x dataset (ours or LeRobot's own).

    Construction reads and checks the metadata (``info.json``, tasks, episodes); `episode` reads one
    episode's data rows and decodes its videos, checking columns, dtypes, shapes and counts. Every
    problem raises `DatasetError` naming the file.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(self.root, "dataset folder does not exist")
        self.progress = _load_progress(self.root / PROGRESS_PATH)
        self.info = self._load_info()
        self.fps = int(self.info["fps"])
        feats = self.info["features"]
        self.video_keys = [k for k, f in feats.items() if f.get("dtype") == "video"]
        self.cameras = [k.removeprefix(IMAGE_PREFIX) for k in self.video_keys]
        self.state_dim = int(feats[STATE_KEY]["shape"][0])
        self.action_dim = int(feats[ACTION_KEY]["shape"][0])
        self.tasks = self._load_tasks()
        self.rows, self.uncommitted = self._load_episodes()
        self.stats = self._load_stats()
        self._cache = _DataCache()

    @property
    def num_episodes(self) -> int:
        return len(self.rows)

    @property
    def dropped(self) -> int | None:
        return dropped_count(self.progress, len(self.rows))

    def __len__(self) -> int:
        return len(self.rows)

    # ---- metadata ----
    def _load_info(self) -> dict[str, Any]:
        path = self.root / INFO_PATH
        if not path.is_file():
            raise DatasetError(path, "missing: not a LeRobot dataset, or no episode was ever completed")
        try:
            info = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DatasetError(path, f"not valid JSON, truncated or corrupt? ({e})") from None
        if not isinstance(info, dict):
            raise DatasetError(path, f"expected a JSON object, got {type(info).__name__}")
        required = ("codebase_version", "fps", "features", "total_episodes", "total_frames", "data_path")
        missing = [k for k in required if k not in info]
        if missing:
            raise DatasetError(path, f"missing keys {missing}")
        version = str(info["codebase_version"])
        if not version.startswith("v3."):
            raise DatasetError(path, f"codebase_version is {version!r}; this reader handles LeRobot v3.x datasets")
        for k in ("fps", "total_episodes", "total_frames"):
            if not isinstance(info[k], int) or isinstance(info[k], bool) or info[k] < 0:
                raise DatasetError(path, f"{k!r} must be a non-negative integer, got {info[k]!r}")
        feats = info["features"]
        if not isinstance(feats, dict):
            raise DatasetError(path, "'features' must be an object of feature name -> {dtype, shape, names}")
        for key in (STATE_KEY, ACTION_KEY, "episode_index", "frame_index", "index", "task_index"):
            if key not in feats:
                raise DatasetError(path, f"features has no {key!r}")
        for key, feat in feats.items():
            if not isinstance(feat, dict) or "dtype" not in feat or "shape" not in feat:
                raise DatasetError(path, f"feature {key!r} needs 'dtype' and 'shape'")
        for key in (STATE_KEY, ACTION_KEY):
            f = feats[key]
            if f["dtype"] != "float32" or len(f["shape"]) != 1:
                raise DatasetError(path, f"feature {key!r} must be float32 with a 1-D shape, got "
                                         f"{f['dtype']} {f['shape']}")
        if any(f["dtype"] == "video" for f in feats.values()) and not info.get("video_path"):
            raise DatasetError(path, "has video features but no 'video_path'")
        return info

    def _load_tasks(self) -> list[str]:
        path = self.root / TASKS_PATH
        table = _read_parquet(path, "the task list")
        names = table.column_names
        text_col = next((c for c in ("__index_level_0__", "task") if c in names), None)
        if "task_index" not in names or text_col is None:
            raise DatasetError(path, f"needs columns 'task_index' and the task text ('__index_level_0__' or "
                                     f"'task'); has {names}")
        index = table.column("task_index").to_pylist()
        text = table.column(text_col).to_pylist()
        tasks: list[str] = [""] * len(index)
        for i, t in zip(index, text, strict=True):
            if not isinstance(i, int) or not 0 <= i < len(index):
                raise DatasetError(path, f"task_index values must be 0..{len(index) - 1}, got {i!r}")
            tasks[i] = t
        return tasks

    def _load_episodes(self) -> tuple[list[dict[str, Any]], int]:
        import pyarrow as pa

        ep_dir = self.root / EPISODES_DIR
        paths = sorted(ep_dir.glob("*/*.parquet"))
        if not paths:
            raise DatasetError(ep_dir, "no episodes parquet file (meta/episodes/chunk-*/file-*.parquet)")
        needed = list(EPISODE_COLUMNS)
        for key in self.video_keys:
            needed += [f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"]
        tables = []
        for p in paths:
            t = _read_parquet(p, "episode metadata")
            missing = [c for c in needed if c not in t.column_names]
            if missing:
                raise DatasetError(p, f"missing columns {missing}")
            keep = [c for c in t.column_names if not c.startswith("stats/")]
            tables.append((p, t.select(keep)))
        rows: list[dict[str, Any]] = []
        for p, t in tables:
            for c in ("episode_index", "length", "dataset_from_index", "dataset_to_index"):
                if not pa.types.is_integer(t.schema.field(c).type):
                    raise DatasetError(p, f"column {c!r} has type {t.schema.field(c).type}, expected int64")
            rows += [{**r, "_source": p} for r in t.to_pylist()]
        total = self.info["total_episodes"]
        info_path = self.root / INFO_PATH
        if len(rows) < total:
            raise DatasetError(paths[-1], f"holds {len(rows)} episodes but {info_path.name} says total_episodes "
                                          f"= {total}")
        committed = rows[:total]
        frames = 0
        for i, row in enumerate(committed):
            src = row["_source"]
            if row["episode_index"] != i:
                raise DatasetError(src, f"row {i} has episode_index {row['episode_index']}; rows must be "
                                        "episodes 0, 1, 2, ... in order")
            if row["dataset_from_index"] != frames or row["dataset_to_index"] != frames + row["length"]:
                raise DatasetError(src, f"episode {i}: dataset_from_index/to_index {row['dataset_from_index']}"
                                        f"/{row['dataset_to_index']} disagree with the lengths (expected "
                                        f"{frames}/{frames + row['length']})")
            frames += row["length"]
        if frames != self.info["total_frames"]:
            raise DatasetError(info_path, f"total_frames is {self.info['total_frames']} but the episodes' "
                                          f"lengths add up to {frames}")
        return committed, len(rows) - total

    def _load_stats(self) -> dict[str, Any]:
        path = self.root / STATS_PATH
        if not path.is_file():
            return {}
        try:
            stats = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DatasetError(path, f"not valid JSON, truncated or corrupt? ({e})") from None
        if not isinstance(stats, dict):
            raise DatasetError(path, "expected a JSON object of feature -> statistics")
        return stats

    # ---- episodes ----
    def episode(self, i: int, frames: bool = True) -> Episode:
        """Episode ``i`` with its data checked against the metadata; ``frames=False`` skips video decoding."""
        if not 0 <= i < len(self.rows):
            raise IndexError(f"episode {i} out of range: the dataset has {len(self.rows)}")
        row = self.rows[i]
        length = int(row["length"])
        path = self.root / self.info["data_path"].format(chunk_index=row["data/chunk_index"],
                                                         file_index=row["data/file_index"])
        cols = self._episode_rows(path, i, length, row)
        task_idx = int(cols["task_index"][0])
        if not 0 <= task_idx < len(self.tasks):
            raise DatasetError(path, f"episode {i} has task_index {task_idx}, but {TASKS_PATH} lists "
                                     f"{len(self.tasks)} tasks")
        images = {c: self._episode_video(i, k, length, row) for c, k in zip(self.cameras, self.video_keys,
                                                                             strict=True)} if frames else {}
        step_success = cols.get(SUCCESS_KEY)
        success = row.get("success")
        if success is None:
            success = bool(step_success.any()) if step_success is not None else False
        seed = row.get("seed")
        return Episode(frames=images, state=cols[STATE_KEY], action=cols[ACTION_KEY],
                       instruction=self.tasks[task_idx], seed=None if seed is None else int(seed),
                       success=bool(success), step_success=step_success, index=i)

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self.rows)):
            yield self.episode(i)

    def _table(self, path: Path) -> Any:
        if self._cache.path != path:
            self._cache.table = _read_parquet(path, "episode data")
            self._cache.path = path
        return self._cache.table

    def _episode_rows(self, path: Path, i: int, length: int, row: dict[str, Any]) -> dict[str, np.ndarray]:
        import pyarrow as pa
        import pyarrow.compute as pc

        table = self._table(path)
        feats = self.info["features"]
        for key in (STATE_KEY, ACTION_KEY):
            if key not in table.column_names:
                raise DatasetError(path, f"missing column {key!r}")
            t = table.schema.field(key).type
            dim = int(feats[key]["shape"][0])
            ok = (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)) and \
                t.value_type == pa.float32()
            if not ok or (pa.types.is_fixed_size_list(t) and t.list_size != dim):
                raise DatasetError(path, f"column {key!r} has type {t}, expected float32 x {dim} as "
                                         f"{INFO_PATH} declares")
        for key in ("episode_index", "frame_index", "index", "task_index"):
            if key not in table.column_names:
                raise DatasetError(path, f"missing column {key!r}")
            if not pa.types.is_integer(table.schema.field(key).type):
                raise DatasetError(path, f"column {key!r} has type {table.schema.field(key).type}, expected int64")
        if SUCCESS_KEY in table.column_names and not pa.types.is_boolean(table.schema.field(SUCCESS_KEY).type):
            raise DatasetError(path, f"column {SUCCESS_KEY!r} has type {table.schema.field(SUCCESS_KEY).type}, "
                                     "expected bool")
        sel = table.filter(pc.equal(table.column("episode_index"), i))
        if sel.num_rows != length:
            raise DatasetError(path, f"holds {sel.num_rows} rows of episode {i}, but {EPISODES_DIR} says its "
                                     f"length is {length}")
        frame_index = sel.column("frame_index").to_numpy()
        order = np.argsort(frame_index, kind="stable")
        if not np.array_equal(frame_index[order], np.arange(length)):
            raise DatasetError(path, f"episode {i}: frame_index is not 0..{length - 1}")
        index = sel.column("index").to_numpy()[order]
        if not np.array_equal(index, np.arange(row["dataset_from_index"], row["dataset_to_index"])):
            raise DatasetError(path, f"episode {i}: 'index' values do not match dataset_from_index/to_index")
        out: dict[str, np.ndarray] = {}
        for key in (STATE_KEY, ACTION_KEY):
            dim = int(feats[key]["shape"][0])
            col = sel.column(key).combine_chunks()
            flat = col.flatten().to_numpy(zero_copy_only=False)
            if flat.size != length * dim:
                raise DatasetError(path, f"column {key!r} rows are not all {dim} long")
            out[key] = flat.reshape(length, dim)[order].astype(np.float32, copy=False)
        out["task_index"] = sel.column("task_index").to_numpy()[order]
        if SUCCESS_KEY in table.column_names:
            out[SUCCESS_KEY] = sel.column(SUCCESS_KEY).to_numpy(zero_copy_only=False)[order].astype(bool)
        return out

    def _episode_video(self, i: int, key: str, length: int, row: dict[str, Any]) -> np.ndarray:
        from vla_rl.utils.video import read_mp4

        path = self.root / self.info["video_path"].format(video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                                                          file_index=row[f"videos/{key}/file_index"])
        if self._cache.video_path != path:
            if not path.is_file():
                raise DatasetError(path, f"missing (video of episode {i})")
            try:
                video = read_mp4(path)
            except Exception as e:  # av raises InvalidDataError & co; np.stack ValueError for zero frames
                raise DatasetError(path, f"cannot decode the video, truncated or corrupt? ({e})") from None
            self._cache.video_path, self._cache.video = path, video
        video = self._cache.video
        assert video is not None
        first = round(float(row[f"videos/{key}/from_timestamp"]) * self.fps)
        to_ts = row.get(f"videos/{key}/to_timestamp")
        span = None if to_ts is None else round(float(to_ts) * self.fps) - first
        if span is not None and span != length:
            raise DatasetError(row["_source"], f"episode {i}: {key} from/to_timestamp span {span} frames, "
                                               f"length is {length}")
        if len(video) < first + length:
            raise DatasetError(path, f"holds {len(video)} frames, but episode {i} needs frames {first}.."
                                     f"{first + length - 1} (length {length} in {EPISODES_DIR}): truncated?")
        shape = tuple(self.info["features"][key]["shape"])
        if video.shape[1:] != shape:
            raise DatasetError(path, f"frames are {video.shape[1:]}, {INFO_PATH} declares {shape}")
        return video[first:first + length]


def read_lerobot(root: str | Path, frames: bool = True) -> LeRobotData:
    """Read and validate every committed episode of the LeRobot v3.x dataset at ``root``.

    Returns `LeRobotData` whose ``episodes`` hold decoded frames (uint8 (T, H, W, 3) per camera; skipped with
    ``frames=False``), state float32 (T, D), action float32 (T, 7), task text, seed and success. A folder
    where recording started but no episode was ever completed reads as zero episodes (with ``dropped``).

    Raises:
        DatasetError: naming the file and the problem (missing keys or columns, wrong dtypes, a truncated
            parquet or mp4, frame counts that disagree with the metadata).
    """
    root = Path(root)
    progress = _load_progress(root / PROGRESS_PATH)
    if progress is not None and not (root / INFO_PATH).exists():
        return LeRobotData(root=root, info={}, stats={}, tasks=[], episodes=[], progress=progress,
                           dropped=dropped_count(progress, 0), discarded=int(progress["discarded"]))
    reader = LeRobotReader(root)
    episodes = [reader.episode(i, frames=frames) for i in range(reader.num_episodes)]
    return LeRobotData(root=root, info=reader.info, stats=reader.stats, tasks=reader.tasks, episodes=episodes,
                       dropped=reader.dropped, discarded=int(progress["discarded"]) if progress else 0,
                       progress=progress, uncommitted=reader.uncommitted)
