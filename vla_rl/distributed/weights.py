"""Versioned policy weights: the learner side publishes each update's weights to the Ray object store with a version
(the iteration they end); the inference side loads them and refuses to act on any other version.

The version of a policy's weights is the number of updates behind them: the init checkpoint is version 0 and the
update of iteration ``i`` (0-based) publishes version ``i + 1``, which iteration ``i + 1``'s rollouts must use. An
inference side that missed a publication (a lost message, a replaced actor that reloaded an old copy) would roll
out on stale weights, silently off-policy: `InferenceWeights.require` makes that an error instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


class StaleWeights(RuntimeError):
    """The inference side holds another version of the policy's weights than the one the iteration needs."""


@dataclass(frozen=True)
class PublishedWeights:
    """A policy's state dict in the object store (``ref``, a Ray ObjectRef) and its ``version``."""

    version: int
    ref: Any


class WeightBoard:
    """The learner side's publications: the latest `PublishedWeights` (older ones are released to the store)."""

    def __init__(self) -> None:
        self.latest: PublishedWeights | None = None

    def publish(self, state: dict[str, torch.Tensor], version: int) -> PublishedWeights:
        """Put ``state`` (a policy's state dict) in the object store as ``version``; versions only go up.

        Raises:
            ValueError: ``version`` is not above the latest published one.
        """
        import ray

        if self.latest is not None and version <= self.latest.version:
            raise ValueError(f"weights version {version} published after version {self.latest.version}: versions "
                             "must increase (one per update)")
        self.latest = PublishedWeights(version, ray.put(state))
        return self.latest


class InferenceWeights:
    """The weights that rollout inference acts with: ``module``'s, at ``version``."""

    def __init__(self, module: torch.nn.Module, version: int, who: str = "the driver's rollout policy") -> None:
        self.module, self.version, self.who = module, version, who

    def load(self, published: PublishedWeights) -> None:
        """Copy the published weights into ``module`` (from the object store) and take their version."""
        import ray

        self.module.load_state_dict(ray.get(published.ref))
        self.version = published.version

    def require(self, version: int) -> None:
        """Check, before acting, that the weights held are ``version``.

        Raises:
            StaleWeights: they are another version (older: a publication was missed).
        """
        if self.version != version:
            age = "stale" if self.version < version else "ahead of the run"
            raise StaleWeights(f"{self.who} holds weights version {self.version} but iteration {version}'s rollouts "
                               f"need version {version} ({age}): load the latest published weights before acting; "
                               "acting now would roll out off-policy")
