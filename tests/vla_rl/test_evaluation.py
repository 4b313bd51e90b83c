"""Evaluation's chunk policies: a finished env's row is not inferred."""

import numpy as np

from tests.vla_rl.policies.test_vla import make, micro, obs
from vla_rl.evaluation import VLAChunkPolicy
from vla_rl.trainers.sft import all_instructions


def test_inactive_rows_are_skipped_and_zero():
    chunks = VLAChunkPolicy(make(micro()))
    rows_inferred: list[int] = []
    act = chunks.policy.act
    chunks.policy.act = lambda batch, **kw: rows_inferred.append(len(batch)) or act(batch, **kw)
    o = obs()
    instructions = all_instructions()[:5]
    full = chunks.act(o, instructions)
    active = np.array([True, False, True, True, False])
    part = chunks.act(o, instructions, active)
    assert rows_inferred == [5, 3]
    assert part.shape == full.shape == (5, 2, 7)
    np.testing.assert_allclose(part[active], full[active], atol=1e-6)  # greedy acting is per row
    assert (part[~active] == 0).all()


def test_eval_overrides_the_checkpoints_action_horizon(tmp_path):
    from vla_rl.evaluation import EvalConfig, make_policy

    make(micro()).save_pretrained(tmp_path / "ckpt")
    o, instructions = obs(), all_instructions()[:5]
    assert make_policy(EvalConfig(policy=str(tmp_path / "ckpt"))).act(o, instructions).shape == (5, 2, 7)
    head = make_policy(EvalConfig(policy=str(tmp_path / "ckpt"), n_action_steps=1))
    assert head.act(o, instructions).shape == (5, 1, 7)


def test_a_checkpoint_records_one_env_through_the_same_chunk_policy(tmp_path):
    """`vla-rl collect --policy <ckpt>`: the recorder calls ``policy(obs, instruction) -> (T, 7)``, which is `act` on
    a batch of one, and writes the policy's name ``vla:<path>`` into the dataset."""
    from vla_rl.data.recorder import collect

    make(micro()).save_pretrained(tmp_path / "ckpt")
    chunks = VLAChunkPolicy.from_pretrained(tmp_path / "ckpt")
    o, instructions = obs(), all_instructions()[:5]
    one = chunks({k: v[2] for k, v in o.items()}, instructions[2])
    np.testing.assert_allclose(one, chunks.act(o, instructions)[2], atol=1e-6)
    s = collect("mujoco/Reach-v1", 1, policy=chunks, out=tmp_path / "d", image_size=32, progress=False, max_steps=4)
    assert s["policy"] == f"vla:{tmp_path / 'ckpt'}" and s["frames"] == 4
