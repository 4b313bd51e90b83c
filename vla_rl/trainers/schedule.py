"""The one learning-rate schedule of the trainers (GRPO per iteration, SFT per step): a linear warmup, then
constant or a half cosine to a floor."""

from __future__ import annotations

import math


def lr_factor(iteration: int, iterations: int, warmup: int, schedule: str = "constant",
              min_ratio: float = 0.1, decay_fraction: float = 1.0, progress: float | None = None) -> float:
    """The learning rate of 0-based ``iteration`` over the base lr: linear warmup to 1 over the first ``warmup``
    iterations ((i + 1) / warmup), then 1 (``constant``) or a half cosine to ``min_ratio`` (``cosine``) over the
    last ``decay_fraction`` of the run, holding 1 before it (1.0: the decay starts at the first iteration after
    the warmup; 0.3: warmup-stable-decay). The run's progress after the warmup is ``(iteration - warmup) /
    (iterations - 1 - warmup)``, 1 at the last iteration, or ``progress`` where given (at least that: a time
    budget's clock, which may end the run before ``iterations``)."""
    if iteration < warmup:
        return (iteration + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"unknown lr_schedule {schedule!r}; valid: constant, cosine")
    done = (iteration - warmup) / max(1, iterations - 1 - warmup)
    if progress is not None:
        done = max(done, progress)
    x = (min(1.0, done) - (1.0 - decay_fraction)) / decay_fraction  # position inside the decay, <= 1
    return 1.0 if x <= 0 else min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * x))
