"""The modality-specific part of the GRPO trainer: what `GRPOTrainer` asks of a backend (`RobotBackend`:
vector envs; `TextBackend`: generated problems). The trainer holds everything else: rollout rounds, dynamic
sampling, advantages, PPO epochs, checkpoints and model selection."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from vla_rl.policies.base import Policy
from vla_rl.rollout.base import Rollout


@runtime_checkable
class Backend(Protocol):
    """A modality's policy class, rollouts and held-out evaluation, for one run."""

    def load_policy(self, path: str | Path) -> Policy:
        """The policy of checkpoint folder ``path`` (the run's init, a resumed state, the KL reference)."""
        ...

    def start(self, policy: Policy) -> None:
        """Build what the rollouts need once the policy is loaded (robot: vector envs at its resolution)."""
        ...

    def rollout(self, policy: Policy, task: str, seeds: list[int], generator: torch.Generator,
                group_offset: int) -> Rollout:
        """One group of rollouts per train-split seed of ``task`` (group ids from ``group_offset``), sampled
        with ``generator``."""
        ...

    def evaluate(self, policy: Policy, split: str, episodes: int) -> dict[str, dict[str, Any]]:
        """Greedy success per task (at least ``{"success": float}``) on the first ``episodes`` seeds of ``split``."""
        ...

    def metrics(self) -> dict[str, float]:
        """Metrics of the last rollout the trainer does not compute itself (TTRL's, RLCCF's), logged with it."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs of the backend beyond the trainer's own state (robot: the curriculum's rungs)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict`'s output."""
        ...

    def close(self) -> None:
        """Release what `start` built."""
        ...
