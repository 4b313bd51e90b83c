"""Episode runners shared by the robot-task tests (``from tests.tasks.robot.helpers import rollout``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Policy = Callable[[], np.ndarray]


def run_episode(env, policy: Policy, on_step: Callable[[], None] | None = None) -> tuple[bool, int]:
    """Step ``env`` from its current state with ``policy()`` actions (7,), one per chunk and without
    rendering, until the episode ends; ``on_step()`` runs after every step. Returns (success, control steps)."""
    while True:
        _, _, terminated, truncated, _ = env.step_chunk(policy()[None], render=False)
        if on_step is not None:
            on_step()
        if terminated or truncated:
            return bool(terminated), env.elapsed


def rollout(env, seed: int, policy: Policy) -> tuple[bool, int]:
    """Reset ``env`` to ``seed`` and run one episode (see `run_episode`); returns (success, control steps)."""
    env.reset(seed=seed)
    return run_episode(env, policy)


def random_policy(seed: int = 0) -> Policy:
    """Uniform random actions in [-1, 1]^7 from one generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    return lambda: rng.uniform(-1, 1, 7).astype(np.float32)
