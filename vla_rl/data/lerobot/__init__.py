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

Modules, by job (as LeRobot's ``datasets/``): `format` (paths, keys, chunk numbering), `writer`
(`LeRobotWriter`, `write_lerobot`: crash safety), `reader` (`LeRobotReader`, `read_lerobot`), `stats`
(exact statistics) and `video` (H.264 episode videos, lossless or not). The names below are re-exported
here: ``from vla_rl.data.lerobot import LeRobotWriter, read_lerobot``.
"""

from vla_rl.data.base import check_frame, dropped_count
from vla_rl.data.lerobot.format import (
    ACTION_KEY,
    ACTION_NAMES,
    CHUNKS_SIZE,
    CODEBASE_VERSION,
    DATA_PATH,
    DEFAULT_FPS,
    EPISODES_DIR,
    EPISODES_PATH,
    IMAGE_PREFIX,
    INFO_PATH,
    PROGRESS_PATH,
    STATE_KEY,
    STATE_NAMES,
    STATS_PATH,
    SUCCESS_KEY,
    TASKS_PATH,
    VIDEO_PATH,
    chunk_file,
    image_key,
)
from vla_rl.data.lerobot.reader import LeRobotData, LeRobotReader, read_lerobot
from vla_rl.data.lerobot.stats import QUANTILES, channel_histogram, image_stats, vector_stats
from vla_rl.data.lerobot.writer import LeRobotWriter, write_lerobot

__all__ = [
    "ACTION_KEY", "ACTION_NAMES", "CHUNKS_SIZE", "CODEBASE_VERSION", "DATA_PATH", "DEFAULT_FPS", "EPISODES_DIR",
    "EPISODES_PATH", "IMAGE_PREFIX", "INFO_PATH", "PROGRESS_PATH", "QUANTILES", "STATE_KEY", "STATE_NAMES",
    "STATS_PATH", "SUCCESS_KEY", "TASKS_PATH", "VIDEO_PATH", "LeRobotData", "LeRobotReader", "LeRobotWriter",
    "channel_histogram", "check_frame", "chunk_file", "dropped_count", "image_key", "image_stats", "read_lerobot",
    "vector_stats", "write_lerobot",
]
