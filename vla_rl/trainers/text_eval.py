"""Evaluating a text policy: greedy, sampled (avg@k) and majority-vote (maj@k) accuracy on held-out splits,
the questions held out of training, the majority vote checked against the labels, and the before/after report
of the text quickstart and RLCCF jobs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vla_rl.splits import split_seeds
from vla_rl.text_tasks import TextTask


def normalise_answer(answer: str | None) -> str | None:
    """An extracted answer with whitespace collapsed and lower-cased, so that equal answers vote together."""
    return None if answer is None else " ".join(answer.split()).lower()


def vote_and_check(task: TextTask, problems: list, texts: list[str]) -> tuple[torch.Tensor, dict, list[bool]]:
    """Majority vote over each problem's completions (grouped by problem seed): the TTRL rewards float32 (N,),
    the per-group info of `majority_vote_rewards`, and whether each group's voted answer is right (labels
    used for reporting only)."""
    from vla_rl.algos.rewards import majority_vote_rewards

    answers = [normalise_answer(task.extract(x)) for x in texts]
    rewards, info = majority_vote_rewards(answers, [p.seed for p in problems])
    by_seed = {p.seed: p for p in problems}
    correct = [v["label"] is not None and task.score(by_seed[s], v["label"]) >= 1.0 for s, v in info.items()]
    return rewards, info, correct


def heldout_questions(task: TextTask, difficulty: int, n: int) -> set[str]:
    """Questions of the first ``n`` val- and test-split problems of ``task`` at ``difficulty``."""
    return {task.generate(s, difficulty).question for split in ("val", "test") for s in split_seeds(split, n)}


def evaluate_text(policy: Any, tasks: dict[str, TextTask], split: str, episodes: int, difficulty: int,
                  max_new_tokens: int, batch_size: int | None = None, samples: int = 0, temperature: float = 0.6,
                  seed: int = 0) -> dict[str, dict[str, Any]]:
    """Greedy accuracy (verify >= 1) per task over the first ``episodes`` seeds of ``split``, with a Wilson
    95% interval. With ``samples`` > 0 also ``samples`` completions per problem at ``temperature``:
    ``sampled_success`` (pass@1 estimated from them, the TTRL paper's avg@k) and ``majority_success`` (the
    most frequent answer is right, maj@k)."""
    out = {}
    with torch.no_grad():
        for name, task in tasks.items():
            seeds = split_seeds(split, episodes)
            out[name] = _greedy_accuracy(policy, task, seeds, difficulty, max_new_tokens, batch_size or 256)
            if samples:
                gen = torch.Generator().manual_seed(seed)
                out[name] |= _sampled_accuracy(policy, task, seeds, samples, temperature, gen, difficulty,
                                               max_new_tokens, batch_size or 256)
    return out


def _greedy_accuracy(policy: Any, task: TextTask, seeds: Sequence[int], difficulty: int, max_new_tokens: int,
                     batch_size: int) -> dict[str, Any]:
    """``success`` (share of greedy completions that verify), its Wilson ``ci95`` and ``episodes``."""
    from vla_rl.rollout.text import collect_text_rollouts
    from vla_rl.utils.stats import wilson_interval

    r = collect_text_rollouts(policy, task, seeds, 1, 1.0, max_new_tokens,
                              difficulty=difficulty, greedy=True, batch_size=batch_size)
    ok = [task.verify(p, x) >= 1.0 for p, x in zip(r.problems, r.texts, strict=True)]
    k = int(sum(ok))
    return {"success": k / len(ok), "ci95": list(wilson_interval(k, len(ok))), "episodes": len(ok)}


def _sampled_accuracy(policy: Any, task: TextTask, seeds: Sequence[int], samples: int, temperature: float,
                      gen: torch.Generator, difficulty: int, max_new_tokens: int, batch_size: int) -> dict[str, Any]:
    """avg@k (``sampled_success``, and per problem) and maj@k (``majority_success``) over ``samples``
    completions per problem at ``temperature``."""
    from vla_rl.rollout.text import collect_text_rollouts

    r = collect_text_rollouts(policy, task, seeds, samples, temperature, max_new_tokens, gen,
                              difficulty=difficulty, batch_size=batch_size)
    _, _, maj = vote_and_check(task, r.problems, r.texts)
    per: dict[int, list[float]] = {}
    for p, ok_ in zip(r.problems, r.success.tolist(), strict=True):
        per.setdefault(p.seed, []).append(float(ok_))
    return {"sampled_success": float(r.success.float().mean()),
            "sampled_per_problem": [float(np.mean(per[s])) for s in seeds],
            "majority_success": float(np.mean(maj)), "samples": samples,
            "temperature": temperature}


def before_after_report(res: dict[str, dict[str, Any]], samples: int) -> dict[str, Any]:
    """Per task: greedy (and sampled / majority) accuracy before -> after, with the paired bootstrap interval of
    the sampled gain."""
    from vla_rl.utils.stats import paired_bootstrap_ci

    out = {}
    for name, b in res["before"].items():
        a = res["after"][name]
        row = {"accuracy_before": b["success"], "accuracy_after": a["success"]}
        if samples:
            row |= {"sampled_success_before": b["sampled_success"], "sampled_success_after": a["sampled_success"],
                    "majority_success_before": b["majority_success"], "majority_success_after": a["majority_success"],
                    "sampled_success_gain_ci95": list(paired_bootstrap_ci(b["sampled_per_problem"],
                                                                          a["sampled_per_problem"]))}
        out[name] = row
    return out
