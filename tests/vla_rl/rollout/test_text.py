"""The text rollout: groups, rewards and the sample contract the GRPO update reads; determinism;
padding-safe concat/select; chunk-wise rollout (MiniCPM4) across calls and policy updates."""

import pytest
import torch

from vla_rl.algos import POLICY_LOSSES, compute_advantages
from vla_rl.policies.lm.modeling_lm import LMPolicy, TextBatch
from vla_rl.policies.lm.tokenization_lm import build_text_tokenizer, task_corpus
from vla_rl.rollout.text import PendingGenerations, TextRollout, collect_text_rollouts, default_reward
from vla_rl.text_tasks import make_text_task, prompt_text

TASK = make_text_task("arithmetic")


@pytest.fixture(scope="module")
def tok():
    torch.set_num_threads(1)
    return build_text_tokenizer(task_corpus(("arithmetic",), n=40), vocab_size=400)


@pytest.fixture
def policy(tok):
    return LMPolicy.from_config("tiny", tok, seed=0).eval()


def eos_prone(policy: LMPolicy, scale: float = 60.0) -> LMPolicy:
    with torch.no_grad():
        policy.model.get_input_embeddings().weight[policy.stop_ids[0]] *= scale
    return policy


def rescore(policy: LMPolicy, r: TextRollout, temperature: float) -> torch.Tensor:
    with torch.no_grad():
        logp, _ = policy.logprobs(r.batch(torch.arange(r.num_samples)), r.tokens, temperature)
    return logp


def test_groups_rewards_and_sample_contract(policy):
    pol = eos_prone(policy)
    r = collect_text_rollouts(
        pol,
        TASK,
        [5, 6, 7],
        group_size=4,
        temperature=1.0,
        max_new_tokens=12,
        generator=torch.Generator().manual_seed(0),
        group_offset=10,
        batch_size=5,
    )
    n = 12
    assert r.num_samples == n and r.tokens.shape[0] == r.input_ids.shape[0] == n
    assert r.group.tolist() == [10] * 4 + [11] * 4 + [12] * 4 and torch.equal(r.traj, torch.arange(n))
    assert r.old_logp.shape == r.entropy.shape == r.token_mask.shape == r.tokens.shape
    assert not r.lost.any() and torch.equal(r.success, r.reward >= 1) and (r.chunks == 1).all()
    assert r.seeds == [5] * 4 + [6] * 4 + [7] * 4 and r.texts == pol.decode(r.tokens, r.token_mask)
    assert r.env_steps == int(r.token_mask.sum()) and r.token_mask.sum(1).max() <= 12
    expect = [TASK.verify(p, t) for p, t in zip(r.problems, r.texts, strict=True)]
    assert r.reward.tolist() == expect
    prompts = [pol.tokenizer.decode(row, skip_special_tokens=True) for row in r.batch(torch.arange(n)).rows()]
    assert prompts == [prompt_text(TASK, TASK.generate(s, 1)) for s in r.seeds]
    torch.testing.assert_close(rescore(pol, r, 1.0) * r.token_mask, r.old_logp, atol=1e-4, rtol=0)


def test_reward_hook_and_default_reward(policy):
    seen = {}

    def majority(problems, texts):
        seen["n"] = (len(problems), len(texts))
        return [1.0 if i % 2 else 0.0 for i in range(len(texts))]

    r = collect_text_rollouts(policy, TASK, [1, 2], 3, 1.0, 4, torch.Generator().manual_seed(0), reward_fn=majority)
    assert seen["n"] == (6, 6) and r.success.tolist() == [False, True] * 3
    p = TASK.generate(3, 1)
    assert default_reward(TASK, p, p.solution, format_weight=0.5) == 1.0
    plain = f"The answer is {p.answer}"  # right but not boxed: verified, yet penalised for the format
    assert default_reward(TASK, p, plain) == TASK.verify(p, plain)
    assert default_reward(TASK, p, plain, format_weight=0.5) == TASK.verify(p, plain) - 0.5


def test_same_generator_seed_same_rollouts(policy):
    def run(seed):
        return collect_text_rollouts(policy, TASK, [0, 1], 3, 1.0, 8, torch.Generator().manual_seed(seed))

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.old_logp, b.old_logp) and a.texts == b.texts
    assert not torch.equal(a.tokens, c.tokens)


def test_concat_and_select_keep_rescoring_exact(policy):
    pol = eos_prone(policy)
    a = collect_text_rollouts(pol, TASK, [0], 3, 1.0, 10, torch.Generator().manual_seed(0), difficulty=1)
    b = collect_text_rollouts(pol, TASK, [1], 2, 1.0, 6, torch.Generator().manual_seed(1), difficulty=3, group_offset=1)
    assert a.input_ids.shape[1] != b.input_ids.shape[1] or a.tokens.shape[1] != b.tokens.shape[1]
    r = TextRollout.concat([a, b])
    assert r.traj.tolist() == [0, 1, 2, 3, 4] and r.group.tolist() == [0, 0, 0, 1, 1]
    torch.testing.assert_close(rescore(pol, r, 1.0) * r.token_mask, r.old_logp, atol=1e-4, rtol=0)
    keep = torch.tensor([True, False, True, False, True])
    s = r.select_trajectories(keep)
    assert s.traj.tolist() == [0, 1, 2] and s.group.tolist() == [0, 0, 1] and len(s.texts) == 3
    assert torch.equal(s.tokens, r.tokens[keep]) and s.problems[2] is r.problems[4]


def test_rollout_feeds_a_grpo_policy_loss(policy):
    """The reads of `GRPOTrainer.update`: ratio 1 at the start, a finite loss and a gradient."""
    r = collect_text_rollouts(
        policy,
        TASK,
        [0, 1],
        4,
        1.0,
        6,
        torch.Generator().manual_seed(0),
        reward_fn=lambda p, t: [float(i % 3 == 0) for i in range(len(t))],
    )
    adv = compute_advantages("grpo", r.success.float(), r.group)[r.traj]
    idx = torch.tensor([0, 3, 5, 6])
    policy.train()
    logp, _ = policy.logprobs(r.batch(idx), r.tokens[idx], 1.0)
    loss, metrics = POLICY_LOSSES.get("ppo_clip")(
        logp, r.old_logp[idx], adv[idx], r.token_mask[idx], agg_mode="token-mean", eps_low=0.2, eps_high=0.28
    )
    loss.backward()
    assert torch.isfinite(loss) and float(metrics["actor/clip_frac"]) == 0.0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.parameters())


def test_chunked_rollout_resumes_across_calls_and_keeps_old_logprobs(policy):
    kw = dict(temperature=1.0, max_new_tokens=12, greedy=True)
    full = collect_text_rollouts(policy, TASK, [0, 1], 2, **kw)
    assert (full.token_mask.sum(1) == 12).all(), "the random model should not stop on its own"
    buf = PendingGenerations()
    first = collect_text_rollouts(policy, TASK, [0, 1], 2, chunk_tokens=5, pending=buf, **kw)
    assert first.num_samples == 0 and len(buf) == buf.num_paused == 4 and buf.groups == [0, 1]
    assert [len(tr.tokens) for tr in buf.items] == [5] * 4
    chunk1 = torch.tensor([tr.logp for tr in buf.items])
    second = collect_text_rollouts(policy, TASK, [], 2, chunk_tokens=5, pending=buf, **kw)
    assert second.num_samples == 0 and [len(tr.tokens) for tr in buf.items] == [10] * 4
    last = collect_text_rollouts(policy, TASK, [], 2, chunk_tokens=5, pending=buf, **kw)
    assert len(buf) == 0 and last.num_samples == 4 and (last.chunks == 3).all()
    assert torch.equal(last.tokens, full.tokens) and last.texts == full.texts  # the chunks concatenate
    torch.testing.assert_close(last.old_logp, full.old_logp, atol=1e-4, rtol=0)
    torch.testing.assert_close(last.old_logp[:, :5], chunk1, atol=0, rtol=0)

    # with an update between calls, each chunk keeps the log-probs of the policy that generated it
    buf = PendingGenerations()
    collect_text_rollouts(policy, TASK, [0, 1], 2, chunk_tokens=7, pending=buf, **kw)
    old = torch.tensor([tr.logp for tr in buf.items])
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    done = collect_text_rollouts(policy, TASK, [], 2, chunk_tokens=7, pending=buf, **kw)
    assert done.num_samples == 4 and (done.token_mask.sum(1) == 12).all()
    new = rescore(policy, done, 1.0)
    torch.testing.assert_close(done.old_logp[:, :7], old, atol=0, rtol=0)
    assert (done.old_logp[:, :7] - new[:, :7]).abs().max() > 1e-2  # stale chunk: ratio != 1
    torch.testing.assert_close(done.old_logp[:, 7:], new[:, 7:], atol=1e-4, rtol=0)  # fresh chunk: ratio 1


def test_chunked_rollout_returns_whole_groups_only(policy):
    pol = eos_prone(policy)
    buf, gen, parts = PendingGenerations(), torch.Generator().manual_seed(0), []
    for call in range(8):
        seeds = [2 * call, 2 * call + 1] if call < 3 else []
        parts.append(
            collect_text_rollouts(pol, TASK, seeds, 3, 1.0, 14, gen, group_offset=2 * call, chunk_tokens=3, pending=buf)
        )
        if call >= 3 and not len(buf):
            break
    assert len(buf) == 0
    returned = [g for r in parts for g in r.group.tolist()]
    assert sorted(returned) == sorted(g for g in range(6) for _ in range(3))  # every group once, all 3 members
    for r in parts:
        assert all(r.group.tolist().count(g) == 3 for g in set(r.group.tolist()))
    r = TextRollout.concat([p for p in parts if p.num_samples])
    assert (r.chunks > 1).any() and (r.token_mask.sum(1) <= 14).all()
    torch.testing.assert_close(rescore(pol, r, 1.0) * r.token_mask, r.old_logp, atol=1e-4, rtol=0)


def test_chunked_rollout_needs_a_buffer(policy):
    with pytest.raises(ValueError, match="PendingGenerations"):
        collect_text_rollouts(policy, TASK, [0], 2, 1.0, 8, chunk_tokens=4)


def test_batch_is_a_text_batch(policy):
    r = collect_text_rollouts(policy, TASK, [0], 2, 1.0, 3, torch.Generator().manual_seed(0))
    assert isinstance(r.batch(torch.tensor([1])), TextBatch)


def test_shared_prompt_prefill_gives_the_same_rollouts(policy):
    """Each group's prompt is prefilled once (`LMPolicy.share_prompts`): same completions and log-probs as a
    per-row prefill, also with groups split across batches, and the same re-scored log-probs."""
    pol = eos_prone(policy)
    runs = []
    for share in (False, True):
        pol.share_prompts = share
        gen = torch.Generator().manual_seed(2)
        runs.append(collect_text_rollouts(pol, TASK, [3, 4, 5], 4, 1.0, 10, gen, batch_size=5))
    full, shared = runs
    assert torch.equal(shared.tokens, full.tokens) and torch.equal(shared.token_mask, full.token_mask)
    assert shared.texts == full.texts and torch.equal(shared.reward, full.reward)
    torch.testing.assert_close(shared.old_logp, full.old_logp, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.entropy, full.entropy, atol=1e-5, rtol=0)
    rescored = rescore(pol, shared, 1.0)
    pol.share_prompts = False
    torch.testing.assert_close(rescored, rescore(pol, shared, 1.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(rescored * shared.token_mask, shared.old_logp, atol=1e-4, rtol=0)
