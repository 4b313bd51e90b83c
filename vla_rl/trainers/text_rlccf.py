"""RLCCF: several LMs trained together on a collective vote (``type: text_rlccf``), no labels used."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from vla_rl.config import Config
from vla_rl.trainers.text_eval import before_after_report, evaluate_text, normalise_answer
from vla_rl.trainers.text_grpo import TextGRPOConfig


class RLCCFConfig(Config):
    """`vla-rl train` with ``type: text_rlccf``: two or more LMs trained together, each rewarded by agreement
    with the collective answer, a vote weighted by each model's self-consistency
    (`vla_rl.algos.rewards.collective_vote_rewards`); no labels are used."""

    type: Literal["text_rlccf"] = "text_rlccf"
    models: list[str] = Field(..., min_length=2, description="checkpoint folders, one per model")
    out: str = "runs/rlccf"
    grpo: dict[str, Any] = Field(default_factory=dict, description="text_grpo keys shared by every model "
                                 "(init and out are set per model)")
    test_episodes: int = Field(0, ge=0, description="held-out test problems per task, scored for every model "
                               "before and after (labels used for the report only); 0: none")
    test_samples: int = Field(16, ge=0, description="samples per test problem for sampled / maj@k accuracy")
    test_temperature: float = Field(0.6, gt=0)

    @model_validator(mode="after")
    def _grpo_valid(self) -> RLCCFConfig:
        cfgs = self.model_configs()
        if cfgs[0].sampling.dynamic_sampling:
            raise ValueError("grpo.sampling.dynamic_sampling: RLCCF's rewards come from the collective vote after "
                             "the rollouts; dynamic sampling would filter on each model's own rewards. Set it false")
        return self

    def model_configs(self) -> list[TextGRPOConfig]:
        from vla_rl.trainers.quickstart import sub_config

        return [sub_config(TextGRPOConfig, self.grpo, {"init": m, "out": str(Path(self.out) / f"model{k}"),
                                                       "checkpoint.overwrite": True}, "grpo")  # a fresh run
                for k, m in enumerate(self.models)]

    def run(self, console: Any = None) -> dict[str, Any]:
        return run_rlccf(self, console)


def run_rlccf(cfg: RLCCFConfig, console: Any = None) -> dict[str, Any]:
    """Each iteration: every model rolls out the same problems (their seed cursors move together), the
    rewards of all their samples are replaced by the collective vote's, then each model takes its own update
    step. Logs each model's run in ``<out>/model<k>`` plus the vote's label accuracy."""
    from vla_rl.trainers.grpo import GRPOTrainer
    from vla_rl.utils.io import atomic_write_json

    trainers = [GRPOTrainer(c, console) for c in cfg.model_configs()]
    tests: list[dict[str, Any]] = [{} for _ in trainers]
    try:
        if cfg.test_episodes:
            for k, res in enumerate(_test_models(cfg, trainers, "before", console)):
                tests[k]["before"] = res
        _train_together(trainers)
        summaries = [t.finish() for t in trainers]
        if cfg.test_episodes:
            for k, res in enumerate(_test_models(cfg, trainers, "after", console)):
                tests[k]["after"] = res
    finally:
        for t in trainers:
            t.close()
    result: dict[str, Any] = {"models": cfg.models, "summaries": summaries}
    if cfg.test_episodes:
        result["test"] = [before_after_report(x, cfg.test_samples) for x in tests]
    atomic_write_json(Path(cfg.out) / "summary.json", result)
    return result


def _train_together(trainers: list[Any]) -> None:
    """Iterate every trainer in lock step until the first runs out of iterations or time: all roll out, the
    collective vote rewards every sample, then each takes its own update step."""
    from vla_rl.algos.rewards import collective_vote_rewards

    for t in trainers:
        t.t_start = time.time()
    n_iter = trainers[0].cfg.iterations
    while trainers[0].iteration < n_iter and not any(t.out_of_time for t in trainers):
        t0 = time.time()
        rolls = [t.rollout() for t in trainers]
        rollout_s = (time.time() - t0) / len(trainers)
        acc = _collective_rewards(trainers, rolls, collective_vote_rewards)
        for t, r in zip(trainers, rolls, strict=True):
            t.backend.add_metrics({"rollout/rlccf_label_accuracy": acc})
            t.step(r, rollout_s)


def _test_models(cfg: RLCCFConfig, trainers: list[Any], when: str, console: Any) -> list[dict[str, Any]]:
    """Every model's `evaluate_text` on the test split (labels used for the report only), printed."""
    out = []
    for k, t in enumerate(trainers):
        c = t.cfg
        res = evaluate_text(t.policy.eval(), t.backend.tasks, "test", cfg.test_episodes, c.difficulty,
                            c.max_new_tokens, c.gen_batch_size, cfg.test_samples, cfg.test_temperature)
        out.append(res)
        if console is not None:
            console.print(f"model {k} {when} RL: " + ", ".join(
                f"{name} greedy {v['success']:.1%}" + (f", sampled {v['sampled_success']:.1%}, "
                                                        f"maj@{cfg.test_samples} {v['majority_success']:.1%}"
                                                        if cfg.test_samples else "")
                for name, v in res.items()))
    return out


def _collective_rewards(trainers: list[Any], rolls: list[Any], vote: Any) -> float:
    """Replace every sample's reward and success by the collective vote's; returns the vote's label accuracy
    (against the true answers, logged only)."""
    answers, model, prompt, where = [], [], [], []
    for k, (t, r) in enumerate(zip(trainers, rolls, strict=True)):
        for i, (p, x) in enumerate(zip(r.problems, r.texts, strict=True)):
            task = t.backend.tasks[p.task]
            answers.append(normalise_answer(task.extract(x)))
            model.append(k)
            prompt.append(hash((p.task, p.seed)))
            where.append((k, i))
    rewards, info = vote(answers, model, prompt)
    for (k, i), v in zip(where, rewards.tolist(), strict=True):
        rolls[k].reward[i] = v
        rolls[k].success[i] = v >= 1.0
    first = {}
    for (k, i), q in zip(where, prompt, strict=True):
        first.setdefault(q, rolls[k].problems[i])
    ok = [info[q]["label"] is not None
          and trainers[0].backend.tasks[p.task].score(p, info[q]["label"]) >= 1.0 for q, p in first.items()]
    return float(np.mean(ok)) if ok else float("nan")
