"""What every rollout (robot or text) shares: per-sample and per-trajectory fields, trajectory selection
(dynamic sampling, dropping lost episodes) and joining rounds.

A rollout is a dataclass whose fields are tagged with `per_sample` (tensors with S rows, one per policy
call), `per_trajectory` (tensors or lists with N entries) or left untagged (run totals, summed on
``concat``). ``traj`` int64 (S,) maps each sample to its trajectory and is renumbered on selection and
offset on joining. A per-sample field may be padded to a common width on joining (``pad="left"`` or
``"right"``: text prompts and completions); a per-trajectory field may be None in some rounds, and takes
``fill(n)`` there when another round has it.

`Rollout` is also the contract with the trainer: it declares every field the GRPO update and its metrics read;
a modality without one (text has no greedy anchors, robots no off-policy samples) inherits its default.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable
from dataclasses import field, fields
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from vla_rl.policies.base import PolicyBatch

R = TypeVar("R", bound="Rollout")


def per_sample(pad: Literal["left", "right"] | None = None) -> Any:
    """A field with one row per sample (S, ...)."""
    return field(metadata={"per": "sample", "pad": pad})


def per_trajectory(factory: Callable[[], Any] | None = None, fill: Callable[[int], Any] | None = None) -> Any:
    """A field with one entry per trajectory (a tensor (N, ...) or a list of N). ``factory``: its default
    (e.g. ``list``); ``fill(n)``: the value for a round that has None (the field then defaults to None)."""
    meta = {"per": "trajectory", "fill": fill}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    if fill is not None:
        return field(default=None, metadata=meta)
    return field(metadata=meta)


def _pad(xs: list[torch.Tensor], side: str | None) -> list[torch.Tensor]:
    if side is None:
        return xs
    width = max(x.shape[1] for x in xs)
    return [F.pad(x, (width - x.shape[1], 0) if side == "left" else (0, width - x.shape[1])) for x in xs]


class Rollout(metaclass=ABCMeta):
    """Base of the rollout dataclasses (`RobotRollout`, `TextRollout`); see the module docstring. S samples, N
    trajectories, L response tokens per sample. What the trainer reads:"""

    # per sample
    tokens: torch.Tensor  # int64 (S, L): the response tokens (an action chunk, a completion)
    token_mask: torch.Tensor  # float32 (S, L): 1 for tokens that carry the outcome (executed, generated)
    old_logp: torch.Tensor  # float32 (S, L): their log-probs under the behaviour policy at its temperature
    entropy: torch.Tensor  # float32 (S, L): the behaviour policy's entropy at each token
    traj: torch.Tensor  # int64 (S,): the trajectory of each sample
    # per trajectory
    group: torch.Tensor  # int64 (N,): the group (initial state or prompt) of each trajectory
    reward: torch.Tensor  # float32 (N,): the outcome reward
    success: torch.Tensor  # bool (N,)
    lost: torch.Tensor  # bool (N,): lost to a crashed worker, never scored (always False for text)
    off_policy: torch.Tensor | None = None  # bool (N,): not sampled from the policy (LUFFY); None: all on-policy
    anchor: torch.Tensor | None = None  # bool (N,): acted greedily (robot anchors); None: none did
    tasks: list[str] | None = None  # N task ids, where an iteration may mix tasks; None: not recorded

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Work done by this rollout (env steps, generated tokens), for the trainer's throughput metrics."""

    @abstractmethod
    def batch(self, idx: torch.Tensor) -> PolicyBatch:
        """The policy inputs of samples ``idx`` int64 (B,)."""

    @property
    def num_samples(self) -> int:
        return int(self.tokens.shape[0])

    def select_trajectories(self: R, keep: torch.Tensor) -> R:
        """Keep trajectories where ``keep`` (bool (N,)) and their samples; trajectory ids are renumbered."""
        new_id = torch.full((len(keep),), -1, dtype=torch.long)
        new_id[keep] = torch.arange(int(keep.sum()))
        rows = keep[self.traj]
        idx = keep.nonzero().squeeze(-1).tolist()
        values: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            v, per = getattr(self, f.name), f.metadata.get("per")
            if f.name == "traj":
                v = new_id[v[rows]]
            elif v is None or per is None:
                pass
            elif per == "sample":
                v = v[rows]
            else:
                v = v[keep] if torch.is_tensor(v) else [v[i] for i in idx]
            values[f.name] = v
        return type(self)(**values)

    @classmethod
    def concat(cls: type[R], parts: list[R]) -> R:
        """Join rounds; trajectory ids are offset so they stay unique (group ids must already be)."""
        offsets = np.cumsum([0] + [len(p.group) for p in parts[:-1]])
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            vs, per = [getattr(p, f.name) for p in parts], f.metadata.get("per")
            if f.name == "traj":
                v: Any = torch.cat([t + int(o) for t, o in zip(vs, offsets, strict=True)])
            elif per is None:
                v = sum(vs)
            elif all(x is None for x in vs):
                v = None
            elif per == "sample":
                v = torch.cat(_pad(vs, f.metadata["pad"]))
            else:
                fill = f.metadata.get("fill")
                vs = [fill(len(p.group)) if x is None and fill else x for p, x in zip(parts, vs, strict=True)]
                v = torch.cat(vs) if torch.is_tensor(vs[0]) else [x for xs in vs for x in xs]
            values[f.name] = v
        return cls(**values)
