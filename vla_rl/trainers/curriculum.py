"""A curriculum over the initial-state range: GRPO rolls a task out on a narrow centre of its initial states first
and widens it as the policy succeeds there.

Why: a policy cloned from one demo succeeds on a small centre of a task's initial states. Rolled out over the
full range it nearly always fails, so every group of rollouts has equal (zero) rewards and GRPO has no signal
(docs/experiments/range.md). Near the demo, groups are mixed; once the policy masters that centre, the next ring
of states is within reach.

How: each task climbs a ladder of range fractions (``spreads``, the env kwarg ``spread`` of `sims.mujoco.env`:
the centred fraction of every initial-state range). A task is rolled out as ``<task>@spread=<s>`` at its current
rung; after ``window`` rollout rounds at that rung whose mean success (sampled, every episode of the round) reaches
``promote_at``, it moves to the next. The last rung is the task itself, so the run ends on the distribution it is
validated and tested on; validation (and so model selection) always uses the task itself.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, field_validator

from vla_rl.config import Config
from vla_rl.envs import check_task_id, env_spec, variant_id


class CurriculumConfig(Config):
    """A ladder of initial-state range fractions per task (`vla_rl.trainers.curriculum`); empty: no curriculum."""

    spreads: list[float] = Field(default_factory=list, description="increasing fractions of each task's "
                                 "initial-state ranges, rolled out in turn; the last must be the task's own spread "
                                 "(1 for a full task). Empty: rollouts always use the task itself")
    promote_at: float = Field(0.5, gt=0, le=1, description="move a task to the next fraction once its rollout "
                              "success averaged over the last `window` rounds at this fraction reaches this")
    window: int = Field(2, ge=1, description="rollout rounds of a task averaged for promotion")

    @field_validator("spreads")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if any(not 0.0 < s <= 1.0 for s in v):
            raise ValueError(f"curriculum.spreads must lie in (0, 1], got {v}")
        if any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError(f"curriculum.spreads must increase, got {v}")
        return v


def own_spread(task: str) -> float:
    """The spread ``task`` is registered (or named) with; 1 (the full ranges) when it sets none."""
    return float(env_spec(task).kwargs.get("spread", 1.0))


def check_curriculum(cfg: CurriculumConfig, tasks: list[str]) -> None:
    """Refuse a ladder that does not end on every task's own spread, or tasks that take no ``spread``."""
    if not cfg.spreads:
        return
    for t in tasks:
        if abs(own_spread(t) - cfg.spreads[-1]) > 1e-9:
            raise ValueError(f"curriculum.spreads ends at {cfg.spreads[-1]:g} but task {t!r} has spread "
                             f"{own_spread(t):g}: end the ladder on the tasks' own spread (the distribution they are "
                             "validated and tested on)")
        try:
            check_task_id(variant_id(t, spread=cfg.spreads[0]))
        except ValueError as e:
            raise ValueError(f"curriculum.spreads needs tasks whose env takes a `spread` (the MuJoCo tasks): {e}") \
                from None


class RangeCurriculum:
    """Each task's rung on the ladder and the success of its rollout rounds there (see the module docstring)."""

    def __init__(self, cfg: CurriculumConfig, tasks: list[str]) -> None:
        self.cfg = cfg
        self.rung = {t: 0 for t in tasks}
        self.recent: dict[str, list[float]] = {t: [] for t in tasks}  # success of each round at the current rung

    def task_id(self, task: str) -> str:
        """The env id ``task`` is rolled out as now (``task`` itself on the last rung)."""
        k = self.rung[task]
        return task if k == len(self.cfg.spreads) - 1 else variant_id(task, spread=self.cfg.spreads[k])

    def spread(self, task: str) -> float:
        return self.cfg.spreads[self.rung[task]]

    def record(self, task: str, success: torch.Tensor) -> bool:
        """Add a rollout round's episode successes (bool, (N,)) of ``task`` at its current rung; promote it once the
        last ``window`` rounds' mean success reaches ``promote_at``. Returns whether it was promoted."""
        if self.rung[task] == len(self.cfg.spreads) - 1 or success.numel() == 0:
            return False
        rounds = self.recent[task]
        rounds.append(float(success.float().mean()))
        if len(rounds) < self.cfg.window or sum(rounds[-self.cfg.window:]) / self.cfg.window < self.cfg.promote_at:
            return False
        self.rung[task] += 1
        self.recent[task] = []
        return True

    def metrics(self) -> dict[str, float]:
        """The current fraction of every task (``curriculum/<task>/spread``)."""
        return {f"curriculum/{t}/spread": self.spread(t) for t in self.rung}

    def state_dict(self) -> dict[str, Any]:
        return {"rung": dict(self.rung), "recent": {t: list(v) for t, v in self.recent.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["rung"]) != set(self.rung):
            raise ValueError(f"the saved curriculum is for tasks {sorted(state['rung'])}, this run has "
                             f"{sorted(self.rung)}: resume with the same tasks")
        self.rung, self.recent = dict(state["rung"]), {t: list(v) for t, v in state["recent"].items()}
