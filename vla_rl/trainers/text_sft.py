"""Supervised fine-tuning of the text LM policy on (prompt, completion) pairs.

The loss is the cross-entropy of the completion tokens only (the prompt is context, not a target),
computed with `LMPolicy.logprobs` at temperature 1, i.e. on exactly the layout the RL update scores
(left-padded prompt + right-padded completion ending with the stop token).

`noisy_solutions` builds a deliberately imperfect SFT set from a text task's reference solutions: a
fraction ``noise`` of them end with a wrong final answer, so SFT yields a weak but non-zero policy for
GRPO to improve.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from vla_rl.policies.lm.modeling_lm import LMPolicy, TextBatch, right_pad
from vla_rl.text_tasks import Problem, TextTask, prompt_text


def completion_nll(logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood over completion tokens: logp, mask (B, T) -> scalar."""
    return -(logp * mask).sum() / mask.sum().clamp(min=1.0)


def text_sft(
    policy: LMPolicy,
    examples: Sequence[tuple[str, str]],
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 32,
    seed: int = 0,
    weight_decay: float = 0.0,
    grad_clip: float = 1.0,
    warmup: int = 10,
    callback: Callable[[int, LMPolicy], None] | None = None,
    every: int = 0,
) -> dict[str, Any]:
    """Train ``policy`` in place for ``steps`` AdamW steps on ``examples`` (prompt, completion) pairs.

    Batches are drawn by shuffled passes over the examples (``seed``); the learning rate warms up
    linearly over ``warmup`` steps, then stays at ``lr``. ``callback(step, policy)`` is called after every
    ``every``-th step (``every`` > 0; e.g. a held-out evaluation; its time is not counted in ``wall_s`` and ``step_s``).
    Returns ``{"loss": [per-step loss], "wall_s", "step_s" (mean seconds per step), "tokens"
    (completion tokens trained on)}``.
    """
    if not examples:
        raise ValueError("text_sft needs at least one (prompt, completion) example")
    prompts = policy.prompt_ids([p for p, _ in examples])
    completions = policy.completion_ids([c for _, c in examples])
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(warmup, 1)))
    order: list[int] = []
    losses: list[float] = []
    tokens = 0
    t_callback = 0.0
    policy.train()
    t0 = time.perf_counter()
    for step in range(steps):
        if len(order) < batch_size:
            order += torch.randperm(len(examples), generator=gen).tolist()
        idx, order = order[:batch_size], order[batch_size:]
        batch = TextBatch.left_pad([prompts[i] for i in idx], policy.pad_id)
        target, mask = right_pad([completions[i] for i in idx], policy.pad_id)
        logp, _ = policy.logprobs(batch, target, 1.0)
        loss = completion_nll(logp, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        tokens += int(mask.sum())
        if callback is not None and every > 0 and (step + 1) % every == 0:
            tc = time.perf_counter()
            policy.eval()
            callback(step + 1, policy)
            policy.train()
            t_callback += time.perf_counter() - tc
    policy.eval()
    wall = time.perf_counter() - t0 - t_callback
    return {"loss": losses, "wall_s": wall, "step_s": wall / max(steps, 1), "tokens": tokens}


def wrong_answer(task: TextTask, problem: Problem, rng: random.Random, tries: int = 20) -> str | None:
    """A final answer that ``task.verify`` rejects, near the right one (an integer moved by 1..10, one digit
    changed, or the characters shuffled); None if none was found in ``tries``."""
    right = problem.answer
    for _ in range(tries):
        if re.fullmatch(r"-?\d+", right.strip()):
            cand = str(int(right) + rng.choice([d for d in range(-10, 11) if d]))
        elif any(c.isdigit() for c in right):
            pos = [i for i, c in enumerate(right) if c.isdigit()]
            i = rng.choice(pos)
            cand = right[:i] + rng.choice([d for d in "0123456789" if d != right[i]]) + right[i + 1 :]
        else:
            chars = list(right)
            rng.shuffle(chars)
            cand = "".join(chars) + ("" if len(set(chars)) > 1 else "x")
        if task.verify(problem, f"\\boxed{{{cand}}}") == 0.0:
            return cand
    return None


def corrupt_solution(problem: Problem, wrong: str) -> str:
    """The reference solution ending with ``wrong`` instead of the answer: the ``\\boxed{}`` answer and its
    last mention before it (the worked result) are both replaced, so the completion stays self-consistent."""
    box = f"\\boxed{{{problem.answer}}}"
    head, sep, tail = problem.solution.rpartition(box)
    if not sep:
        return f"{problem.solution}\nFinal answer: \\boxed{{{wrong}}}"
    before, found, after = head.rpartition(problem.answer)
    if found:
        head = before + wrong + after
    return head + f"\\boxed{{{wrong}}}" + tail


def noisy_solutions(
    task: TextTask, seeds: Sequence[int], difficulty: int = 1, noise: float = 0.3, seed: int = 0
) -> list[tuple[str, str]]:
    """(prompt, completion) pairs for ``task.generate(s, difficulty)``, ``s`` in ``seeds``: the reference
    solution, except that a random fraction ``noise`` (drawn with ``seed``) ends with a wrong answer."""
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    rng = random.Random(seed)
    out = []
    for s in seeds:
        p = task.generate(s, difficulty)
        completion = p.solution
        if rng.random() < noise:
            wrong = wrong_answer(task, p, rng)
            if wrong is not None:
                completion = corrupt_solution(p, wrong)
        out.append((prompt_text(task, p), completion))
    return out
