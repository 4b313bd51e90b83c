"""Evaluation's chunk policies: a finished env's row is not inferred."""

import numpy as np

from bench.rollout_bench import random_policy
from vla_rl.evaluation import VLAChunkPolicy
from vla_rl.policies.vla.configuration_vla import LMConfig, VisionConfig, VLAConfig
from vla_rl.trainers.sft import all_instructions


def test_inactive_rows_are_skipped_and_zero():
    cfg = VLAConfig(vision=VisionConfig(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2,
                                        intermediate_size=64),
                    lm=LMConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64), chunk_size=4)
    chunks = VLAChunkPolicy(random_policy(cfg))
    rows_inferred: list[int] = []
    act = chunks.policy.act
    chunks.policy.act = lambda batch, **kw: rows_inferred.append(len(batch)) or act(batch, **kw)
    rng = np.random.default_rng(0)
    obs = {"agentview": rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8),
           "state": rng.normal(size=(5, 8)).astype(np.float32)}
    instructions = all_instructions()[:5]
    full = chunks.act(None, obs, instructions)
    active = np.array([True, False, True, True, False])
    part = chunks.act(None, obs, instructions, active)
    assert rows_inferred == [5, 3]
    assert part.shape == full.shape == (5, 4, 7)
    np.testing.assert_allclose(part[active], full[active], atol=1e-6)  # greedy acting is per row
    assert (part[~active] == 0).all()
