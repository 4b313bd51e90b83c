"""The text rollout: G completions per generated problem, sampled in batches, scored by the task's verifier.

For text, one sample = one trajectory: the prompt (context) and the whole completion (response); the
trajectory's reward is the verifier's score of the decoded completion. The samples follow
`RobotRollout`'s field names, so the GRPO update reads both the same way (``r.batch(idx)``, ``r.tokens``,
``r.old_logp``, ``r.token_mask``, ``r.traj``, ``r.group``, ``r.success``, ``r.lost``).

Chunk-wise rollout (MiniCPM4 technical report, "chunk-wise rollout"): with ``chunk_tokens`` every call
generates at most that many new tokens per trajectory. Trajectories that have not finished are paused in
a `PendingGenerations` buffer with their tokens and log-probs, and resumed (prompt + partial completion
re-encoded, then sampling continues) in the next call, after the policy may have been updated. A call
returns whole groups of finished trajectories only (GRPO normalises within a group), so finished members
of a group with a paused mate wait in the buffer too. A resumed trajectory's ``old_logp`` is the
concatenation of its chunks' log-probs, each under the policy that generated that chunk, so the per-token
importance ratio of PPO/GRPO is computed per chunk against the policy that generated the chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from vla_rl.policies.lm.modeling_lm import LMPolicy, TextBatch, right_pad
from vla_rl.rollout.base import Rollout, per_sample, per_trajectory
from vla_rl.text_tasks import Problem, TextTask, prompt_text

RewardFn = Callable[[list[Problem], list[str]], "torch.Tensor | Sequence[float]"]


@dataclass
class TextRollout(Rollout):
    """One round of text rollouts. S samples, N trajectories (S == N: one sample per trajectory), prompts
    of P tokens, completions of T tokens.

    input_ids, attention_mask int64 (S, P): left-padded prompts; tokens int64 (S, T): completion ids
    (right-padded); old_logp, entropy float32 (S, T) under the tempered sampling distribution of the
    policy that generated each token; token_mask float32 (S, T) (1 for generated tokens, the stop token
    included); traj int64 (S,).
    Per trajectory: group int64 (N,); reward float32 (N,); success bool (N,) (reward >= 1); lost bool (N,)
    (always False for text); chunks int64 (N,) (rollout calls the trajectory spanned; > 1 only for
    chunk-wise rollout); texts (decoded completions) and problems, N each.
    """

    input_ids: torch.Tensor = per_sample(pad="left")
    attention_mask: torch.Tensor = per_sample(pad="left")
    tokens: torch.Tensor = per_sample(pad="right")
    old_logp: torch.Tensor = per_sample(pad="right")
    entropy: torch.Tensor = per_sample(pad="right")
    token_mask: torch.Tensor = per_sample(pad="right")
    traj: torch.Tensor = per_sample()
    group: torch.Tensor = per_trajectory()
    reward: torch.Tensor = per_trajectory()
    success: torch.Tensor = per_trajectory()
    lost: torch.Tensor = per_trajectory()
    chunks: torch.Tensor = per_trajectory()
    texts: list[str] = per_trajectory(list)
    problems: list[Problem] = per_trajectory(list)
    wall_s: float = 0.0
    policy_s: float = 0.0
    off_policy: torch.Tensor | None = per_trajectory(  # bool (N,): not sampled from the policy (LUFFY)
        fill=lambda n: torch.zeros(n, dtype=torch.bool))

    @property
    def env_steps(self) -> int:
        """Generated tokens (the text counterpart of env steps, for throughput metrics)."""
        return int(self.token_mask.sum())

    def counts(self) -> dict[str, int]:
        """Work done, for the trainer's throughput metrics."""
        return {"tokens": self.env_steps}

    @property
    def seeds(self) -> list[int]:
        return [p.seed for p in self.problems]

    def batch(self, idx: torch.Tensor) -> TextBatch:
        """The policy inputs (`TextBatch`) of samples ``idx``."""
        return TextBatch(self.input_ids[idx], self.attention_mask[idx])


@dataclass
class _Trajectory:
    """One completion being generated: prompt ids, the tokens so far and their log-probs / entropies."""

    task: TextTask
    problem: Problem
    group: int
    prompt: list[int]
    tokens: list[int] = field(default_factory=list)
    logp: list[float] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    chunks: int = 0
    done: bool = False


class PendingGenerations:
    """The buffer of chunk-wise rollout, carried from one `collect_text_rollouts` call to the next:
    paused trajectories (resumed next call) and finished ones whose group mates are still paused."""

    def __init__(self) -> None:
        self.items: list[_Trajectory] = []

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_paused(self) -> int:
        """Trajectories that still generate."""
        return sum(not tr.done for tr in self.items)

    @property
    def groups(self) -> list[int]:
        """Group ids held (each group once)."""
        return sorted({tr.group for tr in self.items})


def default_reward(task: TextTask, problem: Problem, text: str, format_weight: float = 0.0) -> float:
    """``verify + format_weight * (format_reward - 1)``: 1 for a correct answer in the asked format; a
    missing ``\\boxed{}`` / ``<answer>`` costs ``format_weight`` (so reward >= 1 means correct and formatted)."""
    reward = task.verify(problem, text)
    if format_weight:
        reward += format_weight * (task.format_reward(text) - 1.0)
    return reward


def collect_text_rollouts(
    policy: LMPolicy,
    task: TextTask,
    seeds: Sequence[int],
    group_size: int,
    temperature: float,
    max_new_tokens: int,
    generator: torch.Generator | None = None,
    difficulty: int = 1,
    reward_fn: RewardFn | None = None,
    format_weight: float = 0.0,
    group_offset: int = 0,
    greedy: bool = False,
    batch_size: int | None = None,
    chunk_tokens: int | None = None,
    pending: PendingGenerations | None = None,
) -> TextRollout:
    """Sample ``group_size`` completions for each problem ``task.generate(seed, difficulty)`` (one GRPO
    group per seed, group id ``group_offset + index of the seed``), ``batch_size`` rows per forward batch
    (None: all at once), and score them.

    ``reward_fn(problems, texts) -> (N,)`` replaces the verifier (e.g. a TTRL majority vote over each
    group); by default `default_reward` with ``format_weight``. Success is reward >= 1.
    ``chunk_tokens``: chunk-wise rollout (see the module docstring): at most this many new tokens per
    trajectory per call, unfinished trajectories paused in ``pending`` (required) and resumed first in
    the next call (``seeds`` may then be empty); only whole groups of finished trajectories are returned.
    """
    _check_chunking(chunk_tokens, pending)
    t0 = time.perf_counter()
    new = _new_trajectories(policy, task, seeds, difficulty, group_size, group_offset)
    pool = (pending.items if pending is not None else []) + new
    active = [tr for tr in pool if not tr.done]
    was_training = policy.training
    policy.eval()
    t_pol = _extend(policy, active, chunk_tokens or max_new_tokens, max_new_tokens, temperature, generator, greedy,
                    batch_size or max(len(active), 1))
    policy.train(was_training)
    ready = _take_finished_groups(pool, pending)
    return _to_rollout(ready, policy, reward_fn, format_weight, time.perf_counter() - t0, t_pol)


def _check_chunking(chunk_tokens: int | None, pending: PendingGenerations | None) -> None:
    if chunk_tokens is not None and pending is None:
        raise ValueError(
            "chunk-wise rollout (chunk_tokens) needs a PendingGenerations buffer to carry paused "
            "trajectories to the next call"
        )
    if chunk_tokens is not None and chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")


def _new_trajectories(policy: LMPolicy, task: TextTask, seeds: Sequence[int], difficulty: int, group_size: int,
                      group_offset: int) -> list[_Trajectory]:
    """``group_size`` empty trajectories per problem ``task.generate(seed, difficulty)``, in group
    ``group_offset + index of the seed``."""
    problems = [task.generate(s, difficulty) for s in seeds]
    prompt_ids = policy.prompt_ids([prompt_text(task, p) for p in problems]) if problems else []
    return [
        _Trajectory(task, p, group_offset + i, ids)
        for i, (p, ids) in enumerate(zip(problems, prompt_ids, strict=True))
        for _ in range(group_size)
    ]


def _extend(policy: LMPolicy, active: list[_Trajectory], budget: int, max_new_tokens: int, temperature: float,
            generator: torch.Generator | None, greedy: bool, batch_size: int) -> float:
    """Generate up to ``budget`` more tokens for each of ``active`` (``batch_size`` rows per forward batch),
    appending tokens, log-probs and entropies, and mark the finished; returns the seconds spent in the policy."""
    t_pol = 0.0
    for start in range(0, len(active), batch_size):
        part = active[start : start + batch_size]
        batch = TextBatch.left_pad([tr.prompt + tr.tokens for tr in part], policy.pad_id)
        limits = torch.tensor([min(budget, max_new_tokens - len(tr.tokens)) for tr in part])
        tp = time.perf_counter()
        gen = policy.generate(batch, limits, temperature, generator=generator, greedy=greedy)
        t_pol += time.perf_counter() - tp
        for i, tr in enumerate(part):
            n = int(gen.mask[i].sum())
            tr.tokens += gen.tokens[i, :n].tolist()
            tr.logp += gen.logprobs[i, :n].tolist()
            tr.entropy += gen.entropy[i, :n].tolist()
            tr.chunks += 1
            tr.done = bool(gen.finished[i]) or len(tr.tokens) >= max_new_tokens
    return t_pol


def _take_finished_groups(pool: list[_Trajectory], pending: PendingGenerations | None) -> list[_Trajectory]:
    """The trajectories of groups whose every member has finished; the rest stay in ``pending``."""
    waiting = {tr.group for tr in pool if not tr.done}
    if pending is not None:
        pending.items = [tr for tr in pool if tr.group in waiting]
    return [tr for tr in pool if tr.group not in waiting]


def _to_rollout(
    trajs: list[_Trajectory],
    policy: LMPolicy,
    reward_fn: RewardFn | None,
    format_weight: float,
    wall_s: float,
    policy_s: float,
) -> TextRollout:
    batch = TextBatch.left_pad([tr.prompt for tr in trajs], policy.pad_id)
    tokens, mask = right_pad([tr.tokens for tr in trajs], policy.pad_id)
    logp, _ = right_pad([tr.logp for tr in trajs], 0.0, dtype=torch.float32)
    ent, _ = right_pad([tr.entropy for tr in trajs], 0.0, dtype=torch.float32)
    texts = policy.decode(tokens, mask)
    problems = [tr.problem for tr in trajs]
    if reward_fn is None:
        reward = torch.tensor(
            [default_reward(tr.task, tr.problem, x, format_weight) for tr, x in zip(trajs, texts, strict=True)],
            dtype=torch.float32,
        )
    else:
        reward = torch.as_tensor(reward_fn(problems, texts), dtype=torch.float32).reshape(len(trajs))
    n = len(trajs)
    return TextRollout(
        batch.input_ids,
        batch.attention_mask,
        tokens,
        logp,
        ent,
        mask,
        torch.arange(n),
        torch.tensor([tr.group for tr in trajs], dtype=torch.long),
        reward,
        reward >= 1.0,
        torch.zeros(n, dtype=torch.bool),
        torch.tensor([tr.chunks for tr in trajs], dtype=torch.long),
        texts,
        problems,
        wall_s,
        policy_s,
    )


def reference_rollout(policy: LMPolicy, task: TextTask, problems: Sequence[Problem], groups: Sequence[int],
                      format_weight: float = 0.0) -> TextRollout:
    """Off-policy trajectories for LUFFY: each problem's reference solution as a completion, in group
    ``groups[i]``, flagged ``off_policy``. Their ``old_logp`` are zeros: the behaviour policy's log-probs are
    unknown, and the LUFFY loss does not use them (no ratio, no clip on off-policy tokens)."""
    trajs = []
    for p, g, ids in zip(problems, groups, policy.prompt_ids([prompt_text(task, p) for p in problems]), strict=True):
        tr = _Trajectory(task, p, int(g), ids)
        tr.tokens = policy.completion_ids([p.solution])[0]
        tr.logp = [0.0] * len(tr.tokens)
        tr.entropy = [0.0] * len(tr.tokens)
        tr.done, tr.chunks = True, 1
        trajs.append(tr)
    r = _to_rollout(trajs, policy, None, format_weight, 0.0, 0.0)
    r.off_policy = torch.ones(len(trajs), dtype=torch.bool)
    return r
