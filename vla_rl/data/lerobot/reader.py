"""Read LeRobot v3.x datasets (ours or LeRobot's own), validating every file: `LeRobotReader`, `read_lerobot`.

``info.json``'s ``total_episodes`` is what the reader trusts: rows and files past it belong to an episode
that was being written when its writer died (counted as ``uncommitted``), and the progress file, when there
is one, says how many started episodes were dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_rl.data import DatasetError, Episode
from vla_rl.data.base import EpisodeList, dropped_count
from vla_rl.data.lerobot.format import (
    ACTION_KEY,
    EPISODE_COLUMNS,
    EPISODES_DIR,
    IMAGE_PREFIX,
    INFO_PATH,
    PROGRESS_PATH,
    STATE_KEY,
    STATS_PATH,
    SUCCESS_KEY,
    TASKS_PATH,
)
from vla_rl.data.lerobot.video import read_video


def _read_parquet(path: Path, what: str) -> Any:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DatasetError(path, f"missing ({what})")
    try:
        return pq.read_table(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for truncated or foreign files
        raise DatasetError(path, f"not a readable parquet file, truncated or corrupt? ({e})") from None


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


@dataclass
class LeRobotData(EpisodeList):
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
        path = self.root / self.info["video_path"].format(video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                                                          file_index=row[f"videos/{key}/file_index"])
        if self._cache.video_path != path:
            self._cache.video_path, self._cache.video = path, read_video(path, i)
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
