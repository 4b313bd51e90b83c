"""What every policy is to the trainers: a torch module that scores response tokens and loads and saves itself
as a checkpoint folder (the LeRobot ``PreTrainedPolicy`` idea: a base that states what a policy must implement
and refuses to build one that does not).

A policy reads a modality's batch (`VLABatch`: images + instruction + proprio; `TextBatch`: prompts) and
scores the response tokens of each row (an action chunk, a completion). The trainers use nothing else of it.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from pathlib import Path
from typing import Any, Protocol, Self

import torch
from torch import nn


class PolicyBatch(Protocol):
    """A modality's policy inputs for B rows (`VLABatch`, `TextBatch`)."""

    def __len__(self) -> int: ...

    def index(self, idx: torch.Tensor | slice) -> Any: ...

    def to(self, device: torch.device | str) -> Any: ...


class Policy(nn.Module, metaclass=ABCMeta):
    """Base of every policy (`VLAPolicy`, `LMPolicy`); a subclass missing one of the abstract methods cannot be
    instantiated. Besides them the trainers use the `nn.Module` API (``train``/``eval``, ``parameters``,
    ``named_parameters``, ``state_dict``) and ``config``, the architecture it was built from."""

    config: Any

    @property
    def device(self) -> torch.device:
        """Where the policy's parameters are; its methods take inputs from any device and move them here."""
        return next(self.parameters(), torch.empty(0)).device

    @classmethod
    @abstractmethod
    def from_pretrained(cls, path: str | Path) -> Self:
        """Load a checkpoint folder written by `save_pretrained`."""

    @abstractmethod
    def save_pretrained(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write a checkpoint folder atomically (``extra``: JSON-able facts kept with it, e.g. the iteration);
        returns its path."""

    @abstractmethod
    def logprobs(self, batch: Any, tokens: torch.Tensor, temperature: float = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropies float32 (B, L) of response ``tokens`` int64 (B, L) under the policy's
        distribution at ``temperature`` (logits / temperature), given ``batch`` (a `PolicyBatch` of B rows)."""


def multinomial(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One index per row of ``probs`` float (R, n), drawn with ``generator``, int64 (R, 1) on ``probs``' device. The
    generator may live on another device than ``probs`` (the trainer's CPU generator sampling a GPU policy's
    actions): the draw is then made where the generator is, so it follows the generator's state on any device."""
    if generator is None or generator.device == probs.device:
        return torch.multinomial(probs, 1, generator=generator)
    return torch.multinomial(probs.to(generator.device), 1, generator=generator).to(probs.device)


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``module``'s state dict on the CPU, detached: a snapshot that later updates leave unchanged (to publish
    or send to another process)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
