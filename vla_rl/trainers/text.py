"""Text reasoning on the one GRPO trainer: the text backend, TTRL rewards, and the text quickstart job.

`TextGRPOConfig` (``type: text_grpo``) runs `vla_rl.trainers.grpo.GRPOTrainer` with `TextBackend`: the policy
is a causal LM (`vla_rl.policies.lm`), a "task" is a text task family (`tasks.text`), an initial state is a
generated problem (train-split seed), a rollout is a sampled completion scored by the task's verifier, or,
with ``reward: majority_vote`` (TTRL, Zuo et al. 2025), by agreement with the majority answer of its group,
which needs no labels.

Held-out problems: small task families repeat questions across seeds, so a problem is trained on only if
its question is not among the first ``holdout`` problems of the val and test splits; evaluation uses those
splits, so every evaluated question is one the policy never trained on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from vla_rl.config import Config
from vla_rl.trainers.grpo import GRPOAlgoConfig, SamplingConfig


def check_text_task(name: str) -> str:
    """``name`` if it is a registered text task or ``rg/<dataset>``; else the registry's error with the names."""
    from tasks.text.generators import TEXT_TASKS

    if not name.startswith("rg/"):
        TEXT_TASKS.get(name)
    return name


class TextSamplingConfig(SamplingConfig):
    """`SamplingConfig` at the text default temperature."""

    temperature: float = Field(1.0, gt=0, description="sampling temperature")


class TextGRPOConfig(GRPOAlgoConfig):
    """`vla-rl train` with ``type: text_grpo``: GRPO (and its variants) on text tasks from an LM checkpoint."""

    type: Literal["text_grpo"] = "text_grpo"
    tasks: list[str] = Field(..., min_length=1, description="text task names (tasks.text), e.g. arithmetic")
    difficulty: int = Field(1, ge=1)
    max_new_tokens: int = Field(48, ge=1, description="completion budget (tokens)")
    format_weight: float = Field(0.0, ge=0, description="reward lost for an answer outside \\boxed{}/<answer>")
    reward: Literal["verifier", "majority_vote"] = Field(
        "verifier", description="verifier: the task's checker; majority_vote: TTRL, no labels used")
    chunk_tokens: int | None = Field(None, ge=1, description="chunk-wise rollout (MiniCPM4): tokens per call")
    gen_batch_size: int | None = Field(None, ge=1, description="rows per generation batch (None: all)")
    holdout: int = Field(1000, ge=0, description="questions of the first N val and test seeds never trained on")
    off_policy_per_group: int = Field(0, ge=0, description="LUFFY: reference solutions joined to each group "
                                      "(use with loss.name: luffy)")
    sampling: TextSamplingConfig = Field(default_factory=TextSamplingConfig)

    @field_validator("tasks")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return [check_text_task(t) for t in v]

    def backend(self) -> TextBackend:
        return TextBackend(self)


class TextBackend:
    """Text rollouts for `GRPOTrainer`: problems from train-split seeds (held-out questions skipped), G sampled
    completions each, rewards from the verifier or the group's majority vote (TTRL)."""

    def __init__(self, cfg: TextGRPOConfig) -> None:
        from tasks.text.generators import make_text_task
        from vla_rl.rollout.text import PendingGenerations

        self.cfg = cfg
        self.tasks = {name: make_text_task(name) for name in cfg.tasks}
        self.pending = {name: PendingGenerations() for name in cfg.tasks} if cfg.chunk_tokens else {}
        self.heldout = {name: heldout_questions(task, cfg.difficulty, cfg.holdout) for name, task in self.tasks.items()}
        self._metrics: dict[str, float] = {}

    def load_policy(self, path: str | Path) -> Any:
        from vla_rl.policies.lm.modeling_lm import LMPolicy

        return LMPolicy.from_pretrained(path)

    def start(self, policy: Any) -> None:
        return None

    def rollout(self, policy: Any, task: str, seeds: list[int], generator: torch.Generator, group_offset: int) -> Any:
        from vla_rl.rollout.text import collect_text_rollouts

        cfg, t = self.cfg, self.tasks[task]
        seeds = [s for s in seeds if t.generate(s, cfg.difficulty).question not in self.heldout[task]]
        reward_fn = None
        if cfg.reward == "majority_vote":
            def reward_fn(problems: list, texts: list[str]) -> torch.Tensor:
                return self._majority_rewards(t, problems, texts)
        r = collect_text_rollouts(policy, t, seeds, cfg.sampling.group_size, cfg.sampling.temperature,
                                  cfg.max_new_tokens, generator, difficulty=cfg.difficulty, reward_fn=reward_fn,
                                  format_weight=cfg.format_weight, group_offset=group_offset,
                                  batch_size=cfg.gen_batch_size, chunk_tokens=cfg.chunk_tokens,
                                  pending=self.pending.get(task))
        if cfg.off_policy_per_group and len(r.group):
            from vla_rl.rollout.text import TextRollout, reference_rollout

            first = {int(g): i for i, g in reversed(list(enumerate(r.group.tolist())))}
            groups = [g for g in first for _ in range(cfg.off_policy_per_group)]
            off = reference_rollout(policy, t, [r.problems[first[g]] for g in groups], groups, cfg.format_weight)
            r = TextRollout.concat([r, off])
        return r

    def _majority_rewards(self, task: Any, problems: list, texts: list[str]) -> torch.Tensor:
        """TTRL: the pseudo-label is each group's most frequent answer; logs how often it is the true label
        (label accuracy, which the update never sees) and the majority's share of the votes."""
        rewards, info, correct = vote_and_check(task, problems, texts)
        self.add_metrics({"rollout/ttrl_label_accuracy": float(np.mean(correct)) if correct else float("nan"),
                          "rollout/ttrl_majority_ratio": float(np.mean([v["majority_ratio"] for v in info.values()]))})
        return rewards

    def add_metrics(self, values: dict[str, float]) -> None:
        """Metrics of this iteration's rollout that the generic trainer does not compute (TTRL's, RLCCF's)."""
        self._metrics.update(values)

    def metrics(self) -> dict[str, float]:
        """The metrics added since the last call (logged with the iteration's row)."""
        out, self._metrics = self._metrics, {}
        return out

    def evaluate(self, policy: Any, split: str, episodes: int) -> dict[str, dict[str, Any]]:
        """Greedy accuracy per task on the first ``episodes`` problems of ``split``."""
        return evaluate_text(policy, self.tasks, split, episodes, self.cfg.difficulty, self.cfg.max_new_tokens,
                             self.cfg.gen_batch_size)

    def close(self) -> None:
        return None


def _normalise(answer: str | None) -> str | None:
    return None if answer is None else " ".join(answer.split()).lower()


def vote_and_check(task: Any, problems: list, texts: list[str]) -> tuple[torch.Tensor, dict, list[bool]]:
    """Majority vote over each problem's completions (grouped by problem seed): the TTRL rewards float32 (N,),
    the per-group info of `majority_vote_rewards`, and whether each group's voted answer is right (labels
    used for reporting only)."""
    from vla_rl.algos.rewards import majority_vote_rewards

    rewards, info = majority_vote_rewards([_normalise(task.extract(x)) for x in texts], [p.seed for p in problems])
    by_seed = {p.seed: p for p in problems}
    correct = [v["label"] is not None and task.score(by_seed[s], v["label"]) >= 1.0 for s, v in info.items()]
    return rewards, info, correct


def heldout_questions(task: Any, difficulty: int, n: int) -> set[str]:
    """Questions of the first ``n`` val- and test-split problems of ``task`` at ``difficulty``."""
    from vla_rl.splits import split_seeds

    return {task.generate(s, difficulty).question for split in ("val", "test") for s in split_seeds(split, n)}


def evaluate_text(policy: Any, tasks: dict[str, Any], split: str, episodes: int, difficulty: int,
                  max_new_tokens: int, batch_size: int | None = None, samples: int = 0, temperature: float = 0.6,
                  seed: int = 0) -> dict[str, dict[str, Any]]:
    """Greedy accuracy (verify >= 1) per task over the first ``episodes`` seeds of ``split``, with a Wilson
    95% interval. With ``samples`` > 0 also ``samples`` completions per problem at ``temperature``:
    ``sampled_success`` (pass@1 estimated from them, the TTRL paper's avg@k) and ``majority_success`` (the
    most frequent answer is right, maj@k)."""
    from vla_rl.rollout.text import collect_text_rollouts
    from vla_rl.splits import split_seeds
    from vla_rl.utils.stats import wilson_interval

    out = {}
    with torch.no_grad():
        for name, task in tasks.items():
            seeds = split_seeds(split, episodes)
            r = collect_text_rollouts(policy, task, seeds, 1, 1.0, max_new_tokens,
                                      difficulty=difficulty, greedy=True, batch_size=batch_size or 256)
            ok = [task.verify(p, x) >= 1.0 for p, x in zip(r.problems, r.texts, strict=True)]
            k = int(sum(ok))
            out[name] = {"success": k / len(ok), "ci95": list(wilson_interval(k, len(ok))), "episodes": len(ok)}
            if samples:
                gen = torch.Generator().manual_seed(seed)
                r = collect_text_rollouts(policy, task, seeds, samples, temperature, max_new_tokens, gen,
                                          difficulty=difficulty, batch_size=batch_size or 256)
                _, _, maj = vote_and_check(task, r.problems, r.texts)
                per: dict[int, list[float]] = {}
                for p, ok_ in zip(r.problems, r.success.tolist(), strict=True):
                    per.setdefault(p.seed, []).append(float(ok_))
                out[name] |= {"sampled_success": float(r.success.float().mean()),
                              "sampled_per_problem": [float(np.mean(per[s])) for s in seeds],
                              "majority_success": float(np.mean(maj)), "samples": samples,
                              "temperature": temperature}
    return out


# ---- RLCCF: several models trained together on a collective vote -----------------------------------------


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
            raise ValueError("grpo.sampling.dynamic_sampling: RLCCF's rewards come from the collective vote after the "
                             "rollouts; dynamic sampling would filter on each model's own rewards. Set it false")
        return self

    def model_configs(self) -> list[TextGRPOConfig]:
        from vla_rl.trainers.quickstart import sub_config

        return [sub_config(TextGRPOConfig, self.grpo, {"init": m, "out": str(Path(self.out) / f"model{k}"),
                                                       "checkpoint.overwrite": True}, "grpo")  # a fresh run of this job
                for k, m in enumerate(self.models)]

    def run(self, console: Any = None) -> dict[str, Any]:
        return run_rlccf(self, console)


def run_rlccf(cfg: RLCCFConfig, console: Any = None) -> dict[str, Any]:
    """Each iteration: every model rolls out the same problems (their seed cursors move together), the
    rewards of all their samples are replaced by the collective vote's, then each model takes its own update
    step. Logs each model's run in ``<out>/model<k>`` plus the vote's label accuracy."""
    from vla_rl.algos.rewards import collective_vote_rewards
    from vla_rl.trainers.grpo import GRPOTrainer
    from vla_rl.utils.io import atomic_write_json

    trainers = [GRPOTrainer(c, console) for c in cfg.model_configs()]
    tests: list[dict[str, Any]] = [{} for _ in trainers]

    def test(when: str) -> None:
        for k, t in enumerate(trainers):
            c = t.cfg
            res = evaluate_text(t.policy.eval(), t.backend.tasks, "test", cfg.test_episodes, c.difficulty,
                                c.max_new_tokens, c.gen_batch_size, cfg.test_samples, cfg.test_temperature)
            tests[k][when] = res
            if console is not None:
                console.print(f"model {k} {when} RL: " + ", ".join(
                    f"{name} greedy {v['success']:.1%}" + (f", sampled {v['sampled_success']:.1%}, "
                                                            f"maj@{cfg.test_samples} {v['majority_success']:.1%}"
                                                            if cfg.test_samples else "")
                    for name, v in res.items()))

    try:
        if cfg.test_episodes:
            test("before")
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
        summaries = [t.finish() for t in trainers]
        if cfg.test_episodes:
            test("after")
    finally:
        for t in trainers:
            t.close()
    result: dict[str, Any] = {"models": cfg.models, "summaries": summaries}
    if cfg.test_episodes:
        result["test"] = [_test_report(x, cfg.test_samples) for x in tests]
    atomic_write_json(Path(cfg.out) / "summary.json", result)
    return result


def _test_report(res: dict[str, dict[str, Any]], samples: int) -> dict[str, Any]:
    """Per task: greedy (and sampled / majority) accuracy before -> after, with the paired bootstrap interval of
    the sampled gain."""
    from vla_rl.utils.stats import paired_bootstrap_ci

    out = {}
    for name, b in res["before"].items():
        a = res["after"][name]
        row = {"accuracy_before": b["success"], "accuracy_after": a["success"]}
        if samples:
            row |= {"sampled_success_before": b["sampled_success"], "sampled_success_after": a["sampled_success"],
                    "majority_success_before": b["majority_success"], "majority_success_after": a["majority_success"],
                    "sampled_success_gain_ci95": list(paired_bootstrap_ci(b["sampled_per_problem"],
                                                                          a["sampled_per_problem"]))}
        out[name] = row
    return out


def _collective_rewards(trainers: list[Any], rolls: list[Any], vote: Any) -> float:
    """Replace every sample's reward and success by the collective vote's; returns the vote's label accuracy
    (against the true answers, logged only)."""
    answers, model, prompt, where = [], [], [], []
    for k, (t, r) in enumerate(zip(trainers, rolls, strict=True)):
        for i, (p, x) in enumerate(zip(r.problems, r.texts, strict=True)):
            task = t.backend.tasks[p.task]
            answers.append(_normalise(task.extract(x)))
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


# ---- the text quickstart ------------------------------------------------------------------------------


class TextQuickstartConfig(Config):
    """`vla-rl train configs/text_quickstart.yaml`: a tiny LM fine-tuned on noisy solutions of one task
    family, then GRPO; greedy accuracy on held-out test problems before and after RL."""

    type: Literal["text_quickstart"] = "text_quickstart"
    task: str = "arithmetic"
    difficulty: int = Field(1, ge=1)
    model: str = Field("mini", description="LM preset (tiny, mini, small)")
    seed: int = 0
    sft_examples: int = Field(3000, ge=1, description="train-split problems with a (noisy) worked solution")
    noise: float = Field(0.4, ge=0, le=1, description="fraction of SFT solutions ending in a wrong answer")
    sft_steps: int = Field(300, ge=1)
    sft_lr: float = Field(2e-3, gt=0)
    sft_batch_size: int = Field(32, ge=1)
    grpo: dict[str, Any] = Field(default_factory=dict, description="text_grpo keys (tasks, init, out set here)")
    test_episodes: int = Field(200, ge=1, description="held-out test problems, before and after RL")
    test_samples: int = Field(0, ge=0, description="also sample this many completions per test problem: "
                              "sampled accuracy (avg@k) and majority-vote accuracy (maj@k); 0: greedy only")
    test_temperature: float = Field(0.6, gt=0, description="temperature of those samples (TTRL reports 0.6)")
    select: Literal["best", "last"] = Field("best", description="GRPO checkpoint tested after RL: best on "
                                             "validation problems (uses their labels) or last (label-free)")
    threads: int | None = Field(None, ge=1)
    out: str = "runs/text_quickstart"

    @field_validator("task")
    @classmethod
    def _known(cls, v: str) -> str:
        return check_text_task(v)

    @model_validator(mode="after")
    def _grpo_valid(self) -> TextQuickstartConfig:
        self.grpo_config()
        return self

    def grpo_config(self) -> TextGRPOConfig:
        from vla_rl.trainers.quickstart import sub_config

        out = Path(self.out)
        fixed = {"tasks": [self.task], "init": str(out / "sft"), "out": str(out / "grpo"), "checkpoint.overwrite": True,
                 "difficulty": self.difficulty}
        return sub_config(TextGRPOConfig, self.grpo, fixed, "grpo")

    def run(self, console: Any = None) -> dict[str, Any]:
        return run_text_quickstart(self, console)


def run_text_quickstart(cfg: TextQuickstartConfig, console: Any = None) -> dict[str, Any]:
    """SFT on noisy solutions -> test accuracy -> GRPO -> test accuracy; writes ``<out>/results.json``."""
    from tasks.text.generators import make_text_task
    from vla_rl.policies.lm.modeling_lm import LMPolicy
    from vla_rl.splits import split_seeds
    from vla_rl.trainers.text_sft import noisy_solutions, text_sft
    from vla_rl.utils.io import atomic_write_json

    say = console.print if console is not None else (lambda *a, **k: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    task = make_text_task(cfg.task)
    grpo_cfg = cfg.grpo_config()
    heldout = heldout_questions(task, cfg.difficulty, grpo_cfg.holdout)
    walls: dict[str, float] = {}
    t_all = t = time.time()

    seeds = [s for s in split_seeds("train", cfg.sft_examples * 4)
             if task.generate(s, cfg.difficulty).question not in heldout][: cfg.sft_examples]
    if not seeds:
        raise ValueError(f"{cfg.task} at difficulty {cfg.difficulty}: every question is held out (the family "
                         "has too few distinct problems); raise the difficulty or lower grpo.holdout")
    say(f"[bold]1/4 SFT[/] a {cfg.model} LM on {len(seeds)} {cfg.task} solutions ({cfg.noise:.0%} with a wrong answer)")
    policy = LMPolicy.from_config(cfg.model, tasks=[cfg.task], seed=cfg.seed)
    examples = noisy_solutions(task, seeds, cfg.difficulty, cfg.noise, cfg.seed)
    sft = text_sft(policy, examples, cfg.sft_steps, lr=cfg.sft_lr, batch_size=cfg.sft_batch_size, seed=cfg.seed)
    policy.save_pretrained(out / "sft", extra={"sft_steps": cfg.sft_steps})
    walls["sft"], t = time.time() - t, time.time()

    def test(p: Any) -> dict[str, Any]:
        return evaluate_text(p, {cfg.task: task}, "test", cfg.test_episodes, cfg.difficulty,
                             grpo_cfg.max_new_tokens, grpo_cfg.gen_batch_size, cfg.test_samples,
                             cfg.test_temperature, cfg.seed)[cfg.task]

    say(f"[bold]2/4 test[/] on {cfg.test_episodes} held-out problems")
    before = test(policy.eval())
    say(f"accuracy before RL: {before['success']:.1%}")
    walls["test_before"], t = time.time() - t, time.time()

    say(f"[bold]3/4 GRPO[/] ({grpo_cfg.loss.name}, {grpo_cfg.loss.advantage}, reward {grpo_cfg.reward})")
    summary = grpo_cfg.run(console)
    walls["grpo"], t = time.time() - t, time.time()
    chosen = out / "grpo" / ("best" if cfg.select == "best" and (out / "grpo" / "best").is_dir() else "last")

    how = "chosen on validation problems" if chosen.name == "best" else "the last iteration's"
    say(f"[bold]4/4 test[/] the GRPO policy ({chosen.name}: {how})")
    after = test(LMPolicy.from_pretrained(chosen).eval())
    walls["test_after"] = time.time() - t
    results = {"task": cfg.task, "difficulty": cfg.difficulty, "model": cfg.model, "test_episodes": cfg.test_episodes,
               "accuracy_before": before["success"], "accuracy_after": after["success"],
               "ci95_before": before["ci95"], "ci95_after": after["ci95"],
               "improvement": after["success"] - before["success"], "sft_final_loss": float(np.mean(sft["loss"][-10:])),
               "grpo_iterations": summary["iterations"], "generated_tokens": summary.get("tokens", 0),
               "grpo_checkpoint": str(chosen), "wall_s": time.time() - t_all, "phase_wall_s": walls}
    if cfg.test_samples:
        results |= _test_report({"before": {cfg.task: before}, "after": {cfg.task: after}}, cfg.test_samples)[cfg.task]
        results["test_sampling"] = {"samples": cfg.test_samples, "temperature": cfg.test_temperature}
    atomic_write_json(out / "results.json", results)
    say(f"held-out accuracy: {before['success']:.1%} before RL -> {after['success']:.1%} after "
        f"({results['improvement']:+.1%}); {results['wall_s'] / 60:.1f} min; {out / 'results.json'}")
    if cfg.test_samples:
        say(f"sampled (avg@{cfg.test_samples}, T {cfg.test_temperature:g}): {before['sampled_success']:.1%} -> "
            f"{after['sampled_success']:.1%} (gain 95% CI {results['sampled_success_gain_ci95'][0]:+.1%} to "
            f"{results['sampled_success_gain_ci95'][1]:+.1%}); majority vote (maj@{cfg.test_samples}): "
            f"{before['majority_success']:.1%} -> {after['majority_success']:.1%}")
    return results


def entropy_fit(entropy: Sequence[float], reward: Sequence[float]) -> dict[str, float]:
    """Least-squares fit of R = -a exp(H) + b (The Entropy Mechanism of RL for Reasoning LMs, Cui et al.
    2025, eq. 1) to per-step policy entropy H and reward R; returns a, b and R^2."""
    h, r = np.asarray(entropy, dtype=float), np.asarray(reward, dtype=float)
    ok = np.isfinite(h) & np.isfinite(r)
    h, r = h[ok], r[ok]
    if len(h) < 3:
        raise ValueError(f"the entropy fit needs at least 3 logged steps with entropy and reward, got {len(h)}")
    x = np.stack([-np.exp(h), np.ones_like(h)], axis=1)
    (a, b), *_ = np.linalg.lstsq(x, r, rcond=None)
    pred = x @ np.array([a, b])
    ss = float(((r - r.mean()) ** 2).sum())
    return {"a": float(a), "b": float(b), "r2": 1.0 - float(((r - pred) ** 2).sum()) / ss if ss > 0 else float("nan")}
