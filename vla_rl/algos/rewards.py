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


def collective_vote_rewards(answers: Sequence[Hashable | None], model: Sequence[int],
                            prompt: Sequence[int]) -> tuple[torch.Tensor, dict]:
    """RLCCF (Yuan et al. 2025, "Wisdom of the Crowd: Reinforcement Learning from Coevolutionary Collective
    Feedback", arXiv:2508.12338): several models answer the same prompts; the collective answer is a vote in
    which each model's voice is weighted by its self-consistency, and each sample earns 1 if its answer is
    the collective one (no labels).

    What we implement (our reading of the paper's Sec. 3; its exact normalisation may differ), per prompt q:
    model k's samples on q give answers A_k; its self-consistency SC_k = (count of its most frequent
    answer) / |A_k| (0 if it gave none); answer a scores V(a) = sum_k SC_k * n_k(a) / |A_k|, with n_k(a)
    the samples of k answering a; the collective label is argmax_a V(a) (ties: the answer seen first);
    reward_i = 1[answer_i == label]. ``None`` never votes and earns 0.

    answers, model, prompt: one entry per sample (N,). Returns rewards float32 (N,) and per-prompt
    ``{"label", "self_consistency": {model: SC}}``.
    """
    rows: dict[int, dict[int, list[int]]] = {}
    for i, (k, q) in enumerate(zip(model, prompt, strict=True)):
        rows.setdefault(int(q), {}).setdefault(int(k), []).append(i)
    rewards = torch.zeros(len(answers))
    info = {}
    for q, by_model in rows.items():
        score: dict[Hashable, float] = {}
        sc = {}
        for k, idx in by_model.items():
            votes = Counter(answers[i] for i in idx if answers[i] is not None)
            sc[k] = votes.most_common(1)[0][1] / len(idx) if votes else 0.0
            for a, n in votes.items():
                score[a] = score.get(a, 0.0) + sc[k] * n / len(idx)
        label = max(score, key=score.__getitem__) if score else None  # max keeps the first of equal scores
        for idx in by_model.values():
            for i in idx:
                rewards[i] = float(label is not None and answers[i] == label)
        info[q] = {"label": label, "self_consistency": sc}
    return rewards, info
