"""The entropy-performance fit of a text GRPO run (`vla-rl plot` prints it from the run's metrics)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def entropy_fit(entropy: Sequence[float], reward: Sequence[float]) -> dict[str, float]:
    """Least-squares fit of R = -a exp(H) + b (The Entropy Mechanism of RL for Reasoning LMs, Cui et al.
    2025, eq. 1) to per-step policy entropy H and reward R; returns a, b and R^2."""
    h, r = np.asarray(entropy, dtype=float), np.asarray(reward, dtype=float)
    ok = np.isfinite(h) & np.isfinite(r)
    h, r = h[ok], r[ok]
    if len(h) < 3:
        raise ValueError(f"the entropy fit needs at least 3 logged steps with entropy and reward, got {len(h)}")
    x = np.stack([-np.exp(h), np.ones_like(h)], axis=1)
    (a, b), *_ = np.linalg.lstsq(x, r, rcond=None)
    pred = x @ np.array([a, b])
    ss = float(((r - r.mean()) ** 2).sum())
    return {"a": float(a), "b": float(b), "r2": 1.0 - float(((r - pred) ** 2).sum()) / ss if ss > 0 else float("nan")}
