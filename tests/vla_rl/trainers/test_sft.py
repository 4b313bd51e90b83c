"""SFT: HL-Gauss soft labels against a slow reference and their limit at sigma -> 0; weighted dataset sampling."""

import math

import pytest
import torch

from vla_rl.trainers.sft import soft_labels


def _slow_soft_labels(token: int, n: int, sigma: float) -> list[float]:
    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf(x / (sigma * math.sqrt(2))))

    centre = token + 0.5
    p = [cdf(j + 1 - centre) - cdf(j - centre) for j in range(n)]
    total = sum(p)
    return [v / total for v in p]


def test_soft_labels_match_a_loop_over_bins():
    tokens = torch.tensor([[0, 7], [15, 3]])
    got = soft_labels(tokens, 16, 1.5)
    for i in range(2):
        for j in range(2):
            want = torch.tensor(_slow_soft_labels(int(tokens[i, j]), 16, 1.5))
            torch.testing.assert_close(got[i, j], want, atol=1e-6, rtol=0)
    assert got[0, 1].argmax() == 7 and torch.allclose(got[0, 1, 6], got[0, 1, 8])  # symmetric about the bin
    assert got[0, 0, 0] > got[0, 1, 7]  # truncated at the edge and renormalised


def test_tiny_sigma_is_one_hot():
    tokens = torch.tensor([4, 9])
    torch.testing.assert_close(soft_labels(tokens, 12, 1e-3), torch.nn.functional.one_hot(tokens, 12).float())


def test_sft_loss_with_soft_labels_is_their_cross_entropy_over_real_tokens():
    from types import SimpleNamespace

    from vla_rl.trainers.sft import sft_loss

    torch.manual_seed(0)
    logits = torch.randn(3, 4, 16)
    policy = SimpleNamespace(action_logits=lambda batch, tokens: logits)  # the loss only reads the logits
    tokens = torch.randint(0, 16, (3, 4))
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 1, 0, 1]], dtype=torch.bool)
    loss, _ = sft_loss(policy, None, tokens, mask, label_sigma=2.0)
    per_token = -(soft_labels(tokens, 16, 2.0) * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close(loss, per_token[mask].mean())
    hard, _ = sft_loss(policy, None, tokens, mask)
    torch.testing.assert_close(hard, torch.nn.functional.cross_entropy(logits[mask], tokens[mask]))


def _demos(sizes: list[int]):
    from vla_rl.trainers.sft import DemoTensors

    demos = object.__new__(DemoTensors)  # only the bookkeeping that sampling reads
    demos.sizes, demos.instructions = sizes, ["x"] * sum(sizes)
    return demos


def test_weighted_sampling_draws_each_dataset_by_its_weight_and_uniform_within():
    demos, n = _demos([10, 5, 2]), 40_000
    idx = demos.sample(n, torch.Generator().manual_seed(0), [1.0, 0.0, 3.0])
    counts = torch.bincount(idx, minlength=17).double() / n
    expected = torch.tensor([0.25 / 10] * 10 + [0.0] * 5 + [0.75 / 2] * 2, dtype=torch.float64)
    assert counts[10:15].sum() == 0  # weight 0: never drawn
    assert torch.allclose(counts, expected, atol=0.01)
    plain = torch.bincount(demos.sample(n, torch.Generator().manual_seed(0)), minlength=17).double() / n
    assert torch.allclose(plain, torch.full((17,), 1 / 17, dtype=torch.float64), atol=0.01)


def test_data_weights_must_match_the_datasets():
    from vla_rl.trainers.sft import SFTConfig

    with pytest.raises(ValueError, match="one non-negative weight per dataset"):
        SFTConfig(data=["a", "b"], data_weights=[1.0])
    with pytest.raises(ValueError, match="positive sum"):
        SFTConfig(data=["a", "b"], data_weights=[0.0, 0.0])


def test_evaluation_on_started_envs_scores_and_renders_as_on_fresh_ones(tiny_vla, monkeypatch):
    """The GRPO trainer validates on its rollout envs (4 envs for 3 episodes here, left mid-rollout): the
    same records and the same frames as envs started for the evaluation, and the envs stay open."""
    import numpy as np

    import vla_rl.envs
    from vla_rl.envs import EnvConfig, make_vector_env
    from vla_rl.evaluation import VLAChunkPolicy, evaluate_policy, run_episodes
    from vla_rl.rollout.robot import collect_rollouts

    policy, tasks = tiny_vla, ["mujoco/Reach-v1", "mujoco/PushCube-v1"]
    ecfg = EnvConfig(num_envs=4).for_policy(policy.config)
    fresh = evaluate_policy(policy, tasks, "val", 3, ecfg)
    with make_vector_env(ecfg.model_copy(update={"num_envs": 3}), tasks[0]) as env:
        fresh_records, fresh_frames = run_episodes(env, VLAChunkPolicy(policy), [7, 8, 9], record=3)
    envs = {t: make_vector_env(ecfg, t) for t in tasks}
    try:
        collect_rollouts(envs[tasks[0]], policy, [5], group_size=4, temperature=1.0,
                         generator=torch.Generator().manual_seed(0))
        with monkeypatch.context() as m:  # nothing is started: a new env would fail here
            m.setattr(vla_rl.envs, "make_vector_env", lambda *a, **k: pytest.fail("started a new env"))
            reused = evaluate_policy(policy, tasks, "val", 3, ecfg, envs=envs)
            records, frames = run_episodes(envs[tasks[0]], VLAChunkPolicy(policy), [7, 8, 9], record=3)
        envs[tasks[1]].reset(seed=[0, 1, 2, 3])  # still open
        with pytest.raises(ValueError, match="no started env for mujoco/PushCube-v1"):
            evaluate_policy(policy, tasks, "val", 3, ecfg, envs={tasks[0]: envs[tasks[0]]})
    finally:
        for e in envs.values():
            e.close()
    assert reused == fresh and records == fresh_records
    assert len(frames) == 3 and all(np.array_equal(a, b) for a, b in zip(frames, fresh_frames, strict=True))
    assert any(len(f) > 1 and not np.array_equal(f[0], f[-1]) for f in frames)  # the arm moved: a real check
