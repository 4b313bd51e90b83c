"""The LeRobot v3.0 layout: file paths, feature keys and names, chunk numbering (shared by writer and reader)."""

from __future__ import annotations

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
