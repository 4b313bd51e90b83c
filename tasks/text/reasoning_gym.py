"""A reasoning-gym dataset as a text task (``make_text_task("rg/leg_counting")``).

reasoning-gym is optional (``pip install 'vla-rl[reasoning-gym]'``) and imported only when a problem is
generated or scored, so listing tasks never needs it. Its datasets are seeded and indexable, and each
ships a ``score_answer(answer, entry)`` verifier, which this adapter uses as `score`.
"""

from __future__ import annotations

import json
import random
from functools import lru_cache
from types import ModuleType
from typing import Any

from tasks.text.base import ProceduralTextTask
from vla_rl.availability import DependencyNotInstalled
from vla_rl.text_tasks import Problem

INSTALL_HINT = "pip install 'vla-rl[reasoning-gym]'"


def require_reasoning_gym() -> ModuleType:
    """Import reasoning_gym or raise `DependencyNotInstalled` with the pip line to run."""
    try:
        import reasoning_gym
    except ImportError as e:
        raise DependencyNotInstalled(f"reasoning-gym is not installed; run: {INSTALL_HINT}") from e
    return reasoning_gym


@lru_cache(maxsize=64)
def _dataset(name: str, seed: int, config_json: str) -> Any:
    rg = require_reasoning_gym()
    return rg.create_dataset(name, seed=seed, size=1, **json.loads(config_json))


class ReasoningGymTask(ProceduralTextTask):
    """Wrap the reasoning-gym dataset ``dataset`` (e.g. ``"leg_counting"``); ``config`` goes to its
    ``create_dataset``. ``difficulty`` only enters the seed (reasoning-gym sets difficulty through each
    dataset's own config keys, so pass them in ``config``)."""

    def __init__(self, dataset: str, **config: Any) -> None:
        self.dataset = dataset
        self.config = config
        self.name = f"rg/{dataset}"  # type: ignore[misc]
        self._config_json = json.dumps(config, sort_keys=True)

    def _generate(self, rng: random.Random, seed: int, difficulty: int) -> Problem:
        ds_seed = seed * 1000 + difficulty
        entry = _dataset(self.dataset, ds_seed, self._config_json)[0]
        answer = str(entry["answer"])
        solution = f"The reference answer is {answer}.\n\\boxed{{{answer}}}"
        return self.problem(
            seed,
            difficulty,
            entry["question"],
            answer,
            solution,
            dataset_seed=ds_seed,
            metadata=entry.get("metadata", {}),
        )

    def score(self, problem: Problem, answer: str) -> float:
        """The dataset's own ``score_answer`` on the extracted answer."""
        ds = _dataset(self.dataset, problem.meta["dataset_seed"], self._config_json)
        entry = ds[0]
        return float(ds.score_answer(answer=answer, entry=entry))
