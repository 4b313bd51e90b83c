"""Exact statistics as LeRobot's ``meta/stats.json`` stores them: per-dimension vectors and per-channel images.

Exact (numpy, float64, linear-interpolated quantiles) over every frame, not LeRobot's sampled and
histogram-approximated ones; images per channel on the [0, 1] scale with shape (3, 1, 1) and ``count`` =
number of frames, as LeRobot writes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}


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


def jsonable_stats(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return {feat: {k: np.asarray(v).tolist() for k, v in s.items()} for feat, s in stats.items()}
