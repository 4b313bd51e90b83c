"""The text quickstart (``type: text_quickstart``): a tiny LM fine-tuned on noisy solutions, then GRPO, with
held-out test accuracy before and after RL."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from vla_rl.config import Config
from vla_rl.text_tasks import TextTask, check_text_task, make_text_task
from vla_rl.trainers.text_eval import before_after_report, evaluate_text, heldout_questions
from vla_rl.trainers.text_grpo import TextGRPOConfig


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
    from vla_rl.policies.lm.modeling_lm import LMPolicy
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

    policy, sft = _sft(cfg, task, heldout, say)
    walls["sft"], t = time.time() - t, time.time()

    say(f"[bold]2/4 test[/] on {cfg.test_episodes} held-out problems")
    before = _test(cfg, grpo_cfg, task, policy.eval())
    say(f"accuracy before RL: {before['success']:.1%}")
    walls["test_before"], t = time.time() - t, time.time()

    say(f"[bold]3/4 GRPO[/] ({grpo_cfg.loss.name}, {grpo_cfg.loss.advantage}, reward {grpo_cfg.reward})")
    summary = grpo_cfg.run(console)
    walls["grpo"], t = time.time() - t, time.time()
    chosen = out / "grpo" / ("best" if cfg.select == "best" and (out / "grpo" / "best").is_dir() else "last")

    how = "chosen on validation problems" if chosen.name == "best" else "the last iteration's"
    say(f"[bold]4/4 test[/] the GRPO policy ({chosen.name}: {how})")
    after = _test(cfg, grpo_cfg, task, LMPolicy.from_pretrained(chosen).eval())
    walls["test_after"] = time.time() - t
    results = _results(cfg, before, after, sft, summary, chosen) | {"wall_s": time.time() - t_all,
                                                                    "phase_wall_s": walls}
    if cfg.test_samples:
        results |= before_after_report({"before": {cfg.task: before}, "after": {cfg.task: after}},
                                       cfg.test_samples)[cfg.task]
        results["test_sampling"] = {"samples": cfg.test_samples, "temperature": cfg.test_temperature}
    atomic_write_json(out / "results.json", results)
    _say_results(cfg, results, before, after, say)
    return results


def _sft(cfg: TextQuickstartConfig, task: TextTask, heldout: set[str], say: Callable[..., Any]) -> tuple[Any, dict]:
    """Step 1: a fresh ``cfg.model`` LM fine-tuned on noisy solutions of train-split problems whose question is
    not held out; saved in ``<out>/sft``. Returns the policy and `text_sft`'s record."""
    from vla_rl.policies.lm.modeling_lm import LMPolicy
    from vla_rl.splits import split_seeds
    from vla_rl.trainers.text_sft import noisy_solutions, text_sft

    seeds = [s for s in split_seeds("train", cfg.sft_examples * 4)
             if task.generate(s, cfg.difficulty).question not in heldout][: cfg.sft_examples]
    if not seeds:
        raise ValueError(f"{cfg.task} at difficulty {cfg.difficulty}: every question is held out (the family "
                         "has too few distinct problems); raise the difficulty or lower grpo.holdout")
    say(f"[bold]1/4 SFT[/] a {cfg.model} LM on {len(seeds)} {cfg.task} solutions ({cfg.noise:.0%} with a wrong answer)")
    policy = LMPolicy.from_config(cfg.model, tasks=[cfg.task], seed=cfg.seed)
    examples = noisy_solutions(task, seeds, cfg.difficulty, cfg.noise, cfg.seed)
    sft = text_sft(policy, examples, cfg.sft_steps, lr=cfg.sft_lr, batch_size=cfg.sft_batch_size, seed=cfg.seed)
    policy.save_pretrained(Path(cfg.out) / "sft", extra={"sft_steps": cfg.sft_steps})
    return policy, sft


def _test(cfg: TextQuickstartConfig, grpo_cfg: TextGRPOConfig, task: TextTask, policy: Any) -> dict[str, Any]:
    """Steps 2 and 4: `evaluate_text` of ``policy`` on the first ``test_episodes`` test problems."""
    return evaluate_text(policy, {cfg.task: task}, "test", cfg.test_episodes, cfg.difficulty,
                         grpo_cfg.max_new_tokens, grpo_cfg.gen_batch_size, cfg.test_samples,
                         cfg.test_temperature, cfg.seed)[cfg.task]


def _results(cfg: TextQuickstartConfig, before: dict[str, Any], after: dict[str, Any], sft: dict[str, Any],
             summary: dict[str, Any], chosen: Path) -> dict[str, Any]:
    """The ``results.json`` fields of the greedy test, SFT and GRPO (wall times and sampled accuracy added by
    the caller)."""
    return {"task": cfg.task, "difficulty": cfg.difficulty, "model": cfg.model, "test_episodes": cfg.test_episodes,
            "accuracy_before": before["success"], "accuracy_after": after["success"],
            "ci95_before": before["ci95"], "ci95_after": after["ci95"],
            "improvement": after["success"] - before["success"], "sft_final_loss": float(np.mean(sft["loss"][-10:])),
            "grpo_iterations": summary["iterations"], "generated_tokens": summary.get("tokens", 0),
            "grpo_checkpoint": str(chosen)}


def _say_results(cfg: TextQuickstartConfig, results: dict[str, Any], before: dict[str, Any], after: dict[str, Any],
                 say: Callable[..., Any]) -> None:
    say(f"held-out accuracy: {before['success']:.1%} before RL -> {after['success']:.1%} after "
        f"({results['improvement']:+.1%}); {results['wall_s'] / 60:.1f} min; {Path(cfg.out) / 'results.json'}")
    if cfg.test_samples:
        say(f"sampled (avg@{cfg.test_samples}, T {cfg.test_temperature:g}): {before['sampled_success']:.1%} -> "
            f"{after['sampled_success']:.1%} (gain 95% CI {results['sampled_success_gain_ci95'][0]:+.1%} to "
            f"{results['sampled_success_gain_ci95'][1]:+.1%}); majority vote (maj@{cfg.test_samples}): "
            f"{before['majority_success']:.1%} -> {after['majority_success']:.1%}")
