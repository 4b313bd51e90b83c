"""Rewards from outcomes: binary success, TTRL majority vote (label-free), DAPO overlong shaping."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import torch


def outcome_reward(success: torch.Tensor) -> torch.Tensor:
    """1.0 for a successful episode / correct answer, else 0.0. bool (N,) -> float32 (N,)."""
    return success.float()


def majority_vote_rewards(answers: Sequence[Hashable | None], group: Sequence[int]) -> tuple[torch.Tensor, dict]:
    """TTRL (Zuo et al. 2025): within each group (one prompt, N samples) the most frequent extracted answer
    is the pseudo-label; a sample earns 1 if its answer equals it. ``None`` (no answer) never wins and
    earns 0. Ties go to the answer seen first. Returns rewards float32 (N,) and per-group
    ``{"label": answer, "majority_ratio": votes / N}`` keyed by group id."""
    by_group: dict[int, list[int]] = {}
    for i, g in enumerate(group):
        by_group.setdefault(int(g), []).append(i)
    rewards = torch.zeros(len(answers))
    info = {}
    for g, idx in by_group.items():
        votes = Counter(answers[i] for i in idx if answers[i] is not None)
        if not votes:
            info[g] = {"label": None, "majority_ratio": 0.0}
            continue
        label, n = votes.most_common(1)[0]
        for i in idx:
            rewards[i] = float(answers[i] is not None and answers[i] == label)
        info[g] = {"label": label, "majority_ratio": n / len(idx)}
    return rewards, info


def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer: int) -> torch.Tensor:
    """DAPO's soft overlong punishment: 0 up to ``max_len - buffer`` tokens, then linearly down to -1 at
    ``max_len`` (and -1 beyond). int (N,) -> float32 (N,)."""
    start = max_len - buffer
    pen = -(lengths.float() - start) / max(buffer, 1)
    return pen.clamp(min=-1.0, max=0.0)
