"""Text reasoning on the one GRPO trainer: the ``text_grpo`` job's config and its text backend (TTRL rewards,
LUFFY reference solutions, chunk-wise rollout).

`TextGRPOConfig` (``type: text_grpo``) runs `vla_rl.trainers.grpo.GRPOTrainer` with `TextBackend`: the policy
is a causal LM (`vla_rl.policies.lm`), a "task" is a text task family (`vla_rl.text_tasks`), an initial state
is a generated problem (train-split seed), a rollout is a sampled completion scored by the task's verifier, or,
with ``reward: majority_vote`` (TTRL, Zuo et al. 2025), by agreement with the majority answer of its group,
which needs no labels.

Held-out problems: small task families repeat questions across seeds, so a problem is trained on only if
its question is not among the first ``holdout`` problems of the val and test splits; evaluation uses those
splits (`vla_rl.trainers.text_eval`), so every evaluated question is one the policy never trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from vla_rl.text_tasks import check_text_task, make_text_task
from vla_rl.trainers.grpo import GRPOAlgoConfig, SamplingConfig
from vla_rl.trainers.text_eval import evaluate_text, heldout_questions, vote_and_check


class TextSamplingConfig(SamplingConfig):
    """`SamplingConfig` at the text default temperature."""

    temperature: float = Field(1.0, gt=0, description="sampling temperature")


class TextGRPOConfig(GRPOAlgoConfig):
    """`vla-rl train` with ``type: text_grpo``: GRPO (and its variants) on text tasks from an LM checkpoint."""

    type: Literal["text_grpo"] = "text_grpo"
    tasks: list[str] = Field(..., min_length=1, description="text task names (tasks.text), e.g. arithmetic")
    difficulty: int = Field(1, ge=1)
    max_new_tokens: int = Field(48, ge=1, description="completion budget (tokens)")
    format_weight: float = Field(0.0, ge=0, description="reward lost for an answer outside \\boxed{}/<answer>")
    reward: Literal["verifier", "majority_vote"] = Field(
        "verifier", description="verifier: the task's checker; majority_vote: TTRL, no labels used")
    chunk_tokens: int | None = Field(None, ge=1, description="chunk-wise rollout (MiniCPM4): tokens per call")
    gen_batch_size: int | None = Field(None, ge=1, description="rows per generation batch (None: all)")
    holdout: int = Field(1000, ge=0, description="questions of the first N val and test seeds never trained on")
    off_policy_per_group: int = Field(0, ge=0, description="LUFFY: reference solutions joined to each group "
                                      "(use with loss.name: luffy)")
    sampling: TextSamplingConfig = Field(default_factory=TextSamplingConfig)

    @field_validator("tasks")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return [check_text_task(t) for t in v]

    def backend(self) -> TextBackend:
        return TextBackend(self)


class TextBackend:
    """Text rollouts for `GRPOTrainer`: problems from train-split seeds (held-out questions skipped), G sampled
    completions each, rewards from the verifier or the group's majority vote (TTRL)."""

    def __init__(self, cfg: TextGRPOConfig) -> None:
        from vla_rl.rollout.text import PendingGenerations

        self.cfg = cfg
        self.tasks = {name: make_text_task(name) for name in cfg.tasks}
        self.pending = {name: PendingGenerations() for name in cfg.tasks} if cfg.chunk_tokens else {}
        self.heldout = {name: heldout_questions(task, cfg.difficulty, cfg.holdout) for name, task in self.tasks.items()}
        self._metrics: dict[str, float] = {}

    def load_policy(self, path: str | Path) -> Any:
        from vla_rl.policies.lm.modeling_lm import LMPolicy

        return LMPolicy.from_pretrained(path)

    def start(self, policy: Any) -> None:
        return None

    def rollout(self, policy: Any, task: str, seeds: list[int], generator: torch.Generator, group_offset: int) -> Any:
        from vla_rl.rollout.text import collect_text_rollouts

        cfg, t = self.cfg, self.tasks[task]
        seeds = [s for s in seeds if t.generate(s, cfg.difficulty).question not in self.heldout[task]]
        reward_fn = None
        if cfg.reward == "majority_vote":
            def reward_fn(problems: list, texts: list[str]) -> torch.Tensor:
                return self._majority_rewards(t, problems, texts)
        r = collect_text_rollouts(policy, t, seeds, cfg.sampling.group_size, cfg.sampling.temperature,
                                  cfg.max_new_tokens, generator, difficulty=cfg.difficulty, reward_fn=reward_fn,
                                  format_weight=cfg.format_weight, group_offset=group_offset,
                                  batch_size=cfg.gen_batch_size, chunk_tokens=cfg.chunk_tokens,
                                  pending=self.pending.get(task))
        if cfg.off_policy_per_group and len(r.group):
            from vla_rl.rollout.text import TextRollout, reference_rollout

            first = {int(g): i for i, g in reversed(list(enumerate(r.group.tolist())))}
            groups = [g for g in first for _ in range(cfg.off_policy_per_group)]
            off = reference_rollout(policy, t, [r.problems[first[g]] for g in groups], groups, cfg.format_weight)
            r = TextRollout.concat([r, off])
        return r

    def _majority_rewards(self, task: Any, problems: list, texts: list[str]) -> torch.Tensor:
        """TTRL: the pseudo-label is each group's most frequent answer; logs how often it is the true label
        (label accuracy, which the update never sees) and the majority's share of the votes."""
        rewards, info, correct = vote_and_check(task, problems, texts)
        self.add_metrics({"rollout/ttrl_label_accuracy": float(np.mean(correct)) if correct else float("nan"),
                          "rollout/ttrl_majority_ratio": float(np.mean([v["majority_ratio"] for v in info.values()]))})
        return rewards

    def add_metrics(self, values: dict[str, float]) -> None:
        """Metrics of this iteration's rollout that the generic trainer does not compute (TTRL's, RLCCF's)."""
        self._metrics.update(values)

    def metrics(self) -> dict[str, float]:
        """The metrics added since the last call (logged with the iteration's row)."""
        out, self._metrics = self._metrics, {}
        return out

    def evaluate(self, policy: Any, split: str, episodes: int) -> dict[str, dict[str, Any]]:
        """Greedy accuracy per task on the first ``episodes`` problems of ``split``."""
        return evaluate_text(policy, self.tasks, split, episodes, self.cfg.difficulty, self.cfg.max_new_tokens,
                             self.cfg.gen_batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {}  # problems are drawn from the trainer's generator and seed cursor, which it saves itself

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None
