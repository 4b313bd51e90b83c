"""The episode videos: one H.264 file per episode and camera, written durably, probed and decoded.

With ``lossless=True`` the frames are RGB H.264 at qp 0 and decode bit-exact (LeRobot's torchcodec decoder
reads them; pix_fmt ``gbrp``); ``lossless=False`` writes yuv420p crf 20, about 8x smaller but lossy (chroma
subsampling: errors up to ~100 at sharp colour edges, mean ~2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vla_rl.data import DatasetError
from vla_rl.utils.io import fsync_dir, fsync_file


def write_video(path: Path, frames: np.ndarray, fps: int, lossless: bool) -> None:
    """Encode uint8 frames (T, H, W, 3) to ``path`` (atomically) and flush it and its folder to disk."""
    from vla_rl.utils.video import write_mp4

    write_mp4(path, frames, fps=fps, lossless=lossless)
    fsync_file(path)
    fsync_dir(path.parent)


def probe_video_info(path: Path, fps: int) -> dict[str, Any]:
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


def read_video(path: Path, episode: int) -> np.ndarray:
    """Every frame of the video at ``path`` (uint8 (T, H, W, 3)); `DatasetError` if missing or undecodable."""
    from vla_rl.utils.video import read_mp4

    if not path.is_file():
        raise DatasetError(path, f"missing (video of episode {episode})")
    try:
        return read_mp4(path)
    except Exception as e:  # av raises InvalidDataError & co; np.stack ValueError for zero frames
        raise DatasetError(path, f"cannot decode the video, truncated or corrupt? ({e})") from None
