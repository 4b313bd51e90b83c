"""Text reasoning through the one GRPO trainer: runs, resumes, TTRL rewards without labels, held-out
problems, every loss, LUFFY groups and the KL early stop."""

import json

import numpy as np
import pytest
import torch

from vla_rl.cli import main
from vla_rl.policies.lm.modeling_lm import LMPolicy
from vla_rl.splits import split_seeds
from vla_rl.text_tasks import make_text_task
from vla_rl.trainers.grpo import GRPOTrainer
from vla_rl.trainers.text_eval import heldout_questions
from vla_rl.trainers.text_grpo import TextBackend, TextGRPOConfig


@pytest.fixture(scope="module")
def init_lm(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "init"
    LMPolicy.from_config("tiny", tasks=["arithmetic"], seed=0).save_pretrained(path)
    return path


def cfg_for(init, out, **kw) -> TextGRPOConfig:
    base = dict(tasks=["arithmetic"], init=str(init), out=str(out), difficulty=2, iterations=2,
                sampling={"seeds_per_iter": 2, "group_size": 4}, max_new_tokens=12,
                optim={"minibatch_size": 8, "lr": 1e-3}, eval={"every": 2, "episodes": 4}, holdout=20,
                checkpoint={"every": 1}, threads=1)
    for k, v in kw.items():  # a group given here changes only the keys it names
        base[k] = base[k] | v if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return TextGRPOConfig.model_validate(base)


def params(policy) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in policy.parameters()])


def test_text_grpo_runs_and_resumes_to_the_same_parameters(init_lm, tmp_path, capsys):
    full = GRPOTrainer(cfg_for(init_lm, tmp_path / "full", iterations=3))
    try:
        s = full.train()
        want = params(full.policy)
    finally:
        full.close()
    assert s["iterations"] == 3 and s["tokens"] > 0
    rows = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert {"rollout/reward", "perf/tokens_per_s", "rollout/policy_entropy", "loss/pg"} <= set(rows[-1])
    assert "eval/arithmetic/success" in rows[1]
    assert main(["plot", str(tmp_path / "full")]) == 0  # curves, and the entropy fit over the 3 steps
    assert "entropy-performance fit over 3 steps: R = -a exp(H) + b" in capsys.readouterr().out
    part = GRPOTrainer(cfg_for(init_lm, tmp_path / "part", iterations=2))
    try:
        part.train()
    finally:
        part.close()
    resumed = GRPOTrainer(cfg_for(init_lm, tmp_path / "part", iterations=3, checkpoint={"resume": True}))
    try:
        assert resumed.iteration == 2
        resumed.train()
        assert torch.equal(params(resumed.policy), want)
    finally:
        resumed.close()


def test_training_problems_exclude_held_out_questions(init_lm, tmp_path):
    cfg = cfg_for(init_lm, tmp_path, difficulty=1, holdout=100)
    backend = TextBackend(cfg)
    task = make_text_task("arithmetic")
    held = heldout_questions(task, 1, 100)
    assert task.generate(split_seeds("test", 1)[0], 1).question in held
    policy = LMPolicy.from_pretrained(init_lm)
    seeds = split_seeds("train", 40)
    r = backend.rollout(policy, "arithmetic", seeds, torch.Generator().manual_seed(0), 0)
    trained = {p.question for p in r.problems}
    assert trained and not (trained & held)
    assert len(r.problems) < 40 * cfg.sampling.group_size  # some of the 300 difficulty-1 problems were held out


def test_majority_vote_rewards_agreement_not_correctness(init_lm, tmp_path):
    backend = TextBackend(cfg_for(init_lm, tmp_path, reward="majority_vote"))
    task = backend.tasks["arithmetic"]
    p = task.generate(0, 2)
    wrong = str(int(p.answer) + 1)
    texts = [f"\\boxed{{{wrong}}}", f"\\boxed{{{wrong}}}", f"\\boxed{{{p.answer}}}", "no answer"]
    rewards = backend._majority_rewards(task, [p] * 4, texts)
    assert rewards.tolist() == [1.0, 1.0, 0.0, 0.0]  # the (wrong) majority is the pseudo-label
    m = backend.metrics()
    assert m["rollout/ttrl_label_accuracy"] == 0.0 and m["rollout/ttrl_majority_ratio"] == 0.5
    assert backend.metrics() == {}


def test_unknown_text_task_is_refused_with_the_valid_names(init_lm, tmp_path):
    with pytest.raises(ValueError, match="arithmetic"):
        cfg_for(init_lm, tmp_path, tasks=["arithmetc"])


def test_learning_rate_warms_up_linearly(init_lm, tmp_path):
    t = GRPOTrainer(cfg_for(init_lm, tmp_path / "w", iterations=3, optim={"warmup_iterations": 2, "lr": 1e-3},
                            eval={"episodes": 0}))
    try:
        t.train()
    finally:
        t.close()
    rows = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().splitlines()]
    assert [r["actor/lr"] for r in rows] == pytest.approx([5e-4, 1e-3, 1e-3])


@pytest.mark.parametrize("loss,extra", [
    ("ppo_clip", {"loss": {"advantage": "drgrpo"}}),
    ("ppo_clip", {"sampling": {"dynamic_sampling": True}, "loss": {"kwargs": {"eps_low": 0.2, "eps_high": 0.28}}}),
    ("clip_cov", {}),
    ("kl_cov", {}),
    ("nft", {}),
    ("luffy", {"off_policy_per_group": 1}),
    ("ppo_clip", {"chunk_tokens": 4, "max_new_tokens": 8, "loss": {"kl_coef": 0.05}}),  # groups finish in the 2nd call
])
def test_every_algorithm_trains_on_text_through_the_one_trainer(init_lm, tmp_path, loss, extra, monkeypatch):
    # An untrained LM is never right: reward completions of even length so that groups have mixed outcomes.
    from tasks.text.base import ProceduralTextTask

    monkeypatch.setattr(ProceduralTextTask, "verify", lambda self, problem, text: float(len(text or "") % 2 == 0))
    kw = extra | {"loss": {"name": loss} | extra.get("loss", {})}
    t = GRPOTrainer(cfg_for(init_lm, tmp_path / "run", iterations=2, eval={"episodes": 0}, **kw))
    before = params(t.policy).clone()
    try:
        s = t.train()
    finally:
        t.close()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert s["iterations"] == 2 and all(np.isfinite(r["loss/pg"]) for r in rows if "loss/pg" in r)
    assert not torch.equal(params(t.policy), before)
    if loss == "luffy":
        assert any(r.get("actor/off_policy_frac", 0) > 0 for r in rows)


def test_luffy_groups_carry_each_problems_reference_solution(init_lm, tmp_path):
    backend = TextBackend(cfg_for(init_lm, tmp_path, off_policy_per_group=1))
    r = backend.rollout(LMPolicy.from_pretrained(init_lm), "arithmetic", [3, 4], torch.Generator().manual_seed(0), 0)
    off = r.off_policy
    assert off is not None and int(off.sum()) == 2 and len(r.group) == 2 * 4 + 2
    assert set(r.group[off].tolist()) == set(r.group[~off].tolist())
    assert r.reward[off].tolist() == [1.0, 1.0]  # reference solutions verify
    refs = [(x, p) for x, p, o in zip(r.texts, r.problems, off, strict=True) if o]
    assert all(x.endswith(p.solution.split("\\boxed")[-1]) for x, p in refs)


def test_target_kl_stops_the_epochs_early(init_lm, tmp_path, monkeypatch):
    from tasks.text.base import ProceduralTextTask

    monkeypatch.setattr(ProceduralTextTask, "verify", lambda self, problem, text: float(len(text or "") % 2 == 0))
    kw = dict(iterations=1, optim={"epochs": 20, "minibatch_size": 2, "lr": 3e-2}, eval={"episodes": 0})
    free = GRPOTrainer(cfg_for(init_lm, tmp_path / "free", **kw))
    capped = GRPOTrainer(cfg_for(init_lm, tmp_path / "capped", **kw | {"optim": kw["optim"] | {"target_kl": 1e-3}}))
    try:
        free.train()
        capped.train()
    finally:
        free.close()
        capped.close()
    row = lambda d: json.loads((tmp_path / d / "metrics.jsonl").read_text().splitlines()[-1])  # noqa: E731
    assert row("free")["actor/kl_early_stop"] == 0.0 and row("free")["actor/updates"] == 20 * 4
    assert row("capped")["actor/kl_early_stop"] == 1.0 and row("capped")["actor/updates"] < 20 * 4
