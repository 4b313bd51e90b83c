"""Write LeRobot v3.0 datasets: `LeRobotWriter`, a crash-safe episode writer, and `write_lerobot`.

Crash safety. Each episode is held in memory until `LeRobotWriter.end_episode`, which writes, in order,
the videos, the data file, then the metadata (tasks, episodes, stats, and last ``info.json``, the commit
point); every file is written to a temporary name, fsynced and renamed, so each is either the old or the
new version. ``info.json``'s ``total_episodes`` is what readers trust: files of an episode that was being
written when the process died are never referenced (and sort after every committed file, so LeRobot's
loader, which reads every ``data/*/*.parquet``, still indexes only committed frames). A process killed
mid-episode leaves every completed episode loadable by `read_lerobot` and by LeRobot's ``LeRobotDataset``;
the progress file lets the reader say how many started episodes were dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vla_rl.data import Episode
from vla_rl.data.base import EpisodeWriter, prepare_root
from vla_rl.data.lerobot.format import (
    ACTION_KEY,
    ACTION_NAMES,
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_FILES_SIZE_IN_MB,
    DATA_PATH,
    DEFAULT_FPS,
    EPISODES_PATH,
    INFO_PATH,
    PROGRESS_PATH,
    SCALAR_FEATURES,
    STATE_KEY,
    STATE_NAMES,
    STATS_PATH,
    SUCCESS_KEY,
    TASKS_PATH,
    VIDEO_FILES_SIZE_IN_MB,
    VIDEO_PATH,
    chunk_file,
    image_key,
)
from vla_rl.data.lerobot.stats import channel_histogram, image_stats, jsonable_stats, vector_stats
from vla_rl.data.lerobot.video import probe_video_info, write_video
from vla_rl.utils.io import atomic_write_file, atomic_write_json


def _write_parquet(table: Any, path: Path) -> None:
    """Write a pyarrow table atomically: temp name (never ``*.parquet``), fsync, rename."""
    import pyarrow.parquet as pq

    atomic_write_file(path, lambda tmp: pq.write_table(table, tmp, compression="snappy"))


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


class LeRobotWriter(EpisodeWriter):
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
        prepare_root(self.root, overwrite)
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
        start = self._total_frames
        tasks = dict(self._tasks)
        task_index = tasks.setdefault(buf["task"], len(tasks))
        columns = self._frame_columns(buf, step_success, ep, start, task_index)
        frames = {c: np.stack(buf["frames"][c]) for c in self.cameras}
        hists = {c: channel_histogram(frames[c]) for c in self.cameras}

        # 1. videos, 2. data: files nothing references until info.json is rewritten below
        chunk, file = chunk_file(ep)
        row: dict[str, Any] = {"episode_index": ep, "tasks": [buf["task"]], "length": length,
                               "data/chunk_index": chunk, "data/file_index": file,
                               "dataset_from_index": start, "dataset_to_index": start + length}
        video_info = self._write_videos(chunk, file, frames, row)
        _write_parquet(self._data_table(columns), self.root / DATA_PATH.format(chunk_index=chunk, file_index=file))

        # 3. metadata, info.json last (the commit point)
        row.update(self._episode_stats(columns, hists, length))
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                    "seed": None if seed is None else int(seed), "success": success})
        rows = [*self._rows, row]
        new_columns = {k: [*self._columns.get(k, []), v] for k, v in columns.items()}
        new_hist = {c: self._hist[c] + hists[c] for c in self.cameras}
        total = start + length
        self._write_metadata(rows, tasks, new_columns, new_hist, total, video_info)

        # committed: update the in-memory state, then the progress file
        self._rows, self._tasks, self._columns, self._hist = rows, tasks, new_columns, new_hist
        self._total_frames, self._video_info = total, video_info
        self._episode_saved()
        return ep

    # ---- the steps of end_episode ----
    def _frame_columns(self, buf: dict[str, Any], step_success: np.ndarray, ep: int, start: int,
                       task_index: int) -> dict[str, np.ndarray]:
        """The episode's per-frame columns (the data file's, in its column order), T rows each."""
        length = len(step_success)
        return {
            STATE_KEY: np.stack(buf["state"]),
            ACTION_KEY: np.stack(buf["action"]),
            SUCCESS_KEY: step_success,
            "timestamp": (np.arange(length) / self.fps).astype(np.float32),
            "frame_index": np.arange(length, dtype=np.int64),
            "episode_index": np.full(length, ep, dtype=np.int64),
            "index": np.arange(start, start + length, dtype=np.int64),
            "task_index": np.full(length, task_index, dtype=np.int64),
        }

    def _write_videos(self, chunk: int, file: int, frames: dict[str, np.ndarray],
                      row: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Write the episode's video of every camera as file ``chunk``/``file``, add their ``videos/<key>/*``
        columns to ``row``; returns every camera's video info (probed from its first video)."""
        length = len(next(iter(frames.values())))
        video_info = dict(self._video_info)
        for c in self.cameras:
            key = image_key(c)
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            write_video(path, frames[c], self.fps, self.lossless)
            if key not in video_info:
                video_info[key] = probe_video_info(path, self.fps)
            row[f"videos/{key}/chunk_index"] = chunk
            row[f"videos/{key}/file_index"] = file
            row[f"videos/{key}/from_timestamp"] = 0.0
            row[f"videos/{key}/to_timestamp"] = length / self.fps
        return video_info

    def _episode_stats(self, columns: dict[str, np.ndarray], hists: dict[str, np.ndarray],
                       length: int) -> dict[str, Any]:
        """The episode's ``stats/<feature>/<stat>`` columns: images first, then the frame columns."""
        ep_stats = {image_key(c): image_stats(hists[c], length) for c in self.cameras}
        ep_stats.update({k: vector_stats(v) for k, v in columns.items()})
        return {f"stats/{feat}/{name}": np.asarray(val).tolist()
                for feat, s in ep_stats.items() for name, val in s.items()}

    def _write_metadata(self, rows: list[dict[str, Any]], tasks: dict[str, int],
                        columns: dict[str, list[np.ndarray]], hist: dict[str, np.ndarray], total: int,
                        video_info: dict[str, dict[str, Any]]) -> None:
        """Rewrite the metadata for ``rows``: tasks (if one is new), episodes, stats, then info.json (the commit)."""
        if len(tasks) != len(self._tasks):
            _write_parquet(_tasks_table(list(tasks)), self.root / TASKS_PATH)
        _write_parquet(self._episodes_table(rows), self.root / EPISODES_PATH)
        stats = {image_key(c): image_stats(hist[c], total) for c in self.cameras}
        stats.update({k: vector_stats(np.concatenate(v)) for k, v in columns.items()})
        atomic_write_json(self.root / STATS_PATH, jsonable_stats(stats))
        atomic_write_json(self.root / INFO_PATH, self._info(len(rows), total, len(tasks), video_info))

    # ---- internals ----
    def _task_text(self, task: str) -> str:
        if not isinstance(task, str) or not task:
            raise ValueError(f"task must be a non-empty instruction string, got {task!r}")
        return task

    def _write_progress(self) -> None:
        atomic_write_json(self.root / PROGRESS_PATH, self._progress)

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
