"""`vla-rl bench update`: one full GRPO training step (generate, score, update) at identical settings, our
`GRPOTrainer` vs TRL's `GRPOTrainer`, in one run; writes ``bench/results/update.json``.

Identical work on both sides:

- weights: one ``LMPolicy.from_config(model)`` (tokenizer trained on the task's corpus) saved with
  ``save_pretrained`` to a temporary folder; ours loads it with `LMPolicy.from_pretrained`, TRL with
  ``AutoModelForCausalLM.from_pretrained`` + ``AutoTokenizer.from_pretrained`` (the same Llama class, float32);
- prompts: step ``i`` uses train-split seeds ``[i * prompts, (i + 1) * prompts)`` of the task on both sides (ours:
  ``holdout=0`` so no seed is skipped; TRL: a dataset of those prompts in that order, ``shuffle_dataset=False``),
  each repeated ``group_size`` times, tokenised the same way (``<s>`` + text, no chat template);
- completions: exactly ``max_new_tokens`` tokens per row. TRL: ``generation_kwargs={"min_new_tokens": L}`` (the
  EOS logit is masked until L tokens, so no row stops or gets truncated). Ours: the policy's stop ids are set to
  ``[-1]`` after the trainer loads it (an id never sampled), so every row runs to its budget. The token counts of
  every step are checked and recorded on both sides;
- the update: ONE optimizer step per generation batch over the whole batch (ours: ``epochs=1``,
  ``minibatch_size`` = prompts x group; TRL: ``per_device_train_batch_size`` = prompts x group,
  ``gradient_accumulation_steps=1``, ``steps_per_generation=1``, ``num_iterations=1``, so TRL also skips the
  extra old-log-prob forward), token-mean clipped loss (eps 0.2 / 0.28; TRL ``loss_type="dapo"``), group-normalised
  advantages, no KL and no reference model (``kl_coef=0`` / ``beta=0``), AdamW (betas 0.9, 0.95, no weight decay,
  constant lr), grad-norm clip 1.0, temperature 1 without top-k / top-p, float32 on CPU (TRL: ``bf16=False``,
  ``activation_checkpointing=False`` (TRL checkpoints by default), no vLLM), no evaluation, no checkpoints, no logging.

Rewards: by default (``rewards=mixed``) both sides get the same seeded 0/1 pattern per step instead of the
verifier's scores (`reward_pattern`): half the groups mixed, half all zero. A random-weight model scores most
groups all zero, and our trainer skips the forward and backward of zero-advantage samples (they add nothing to
the loss) while TRL computes them anyway; with such rewards one side did no gradient work and the ratio said
nothing about the update (issue 35: 4.23x in one run, 1.76x committed). Every side reports the share of
samples with a nonzero advantage per step (``informative_frac_per_step``), and ours runs twice: with the skip
(``ours``) and without it (``ours_noskip``, the same gradient work as TRL's).

Timing: ``warmup`` steps are run first and not counted, then ``steps`` measured steps per side, in one process,
ours first. Ours: `time.perf_counter` around ``trainer.rollout()`` (generation + decoding + verifier) and
``trainer.learn(r)`` (the in-process update: forward, backward, clip, AdamW step), the trainer driven step by
step as its ``train()`` does (without the checkpoint and metric writes). TRL: a `TrainerCallback` times each
optimizer step from ``on_step_begin`` to ``on_step_end``; the generation part is the time spent in the trainer's
``_generate_and_score_completions`` (wrapped on the instance with a timer: generation + decoding + reward +
advantages), the update part is the rest of the step. Both sides also report the time in the model's
sampling loop alone (ours: the rollout's ``policy_s``; TRL: its ``_generate_single_turn``, wrapped likewise).

Threads: both sides run with the same torch thread count, 1 by default: on the shared 2-core dev box, 2 OpenMP
threads competing with other jobs made a micro TRL step 2.2 s instead of 0.024 s (threads stall at barriers).

Throughput: ``tokens_per_s`` = generated completion tokens (prompts x group x max_new_tokens per step) / seconds
of the full step, summed over the measured steps; ``tokens_per_cpu_s`` the same over the process's CPU seconds
(`time.process_time`; with one torch thread nearly the work done, far less disturbed than wall time by other
jobs on a shared machine); ``ratio_ours_over_trl`` = ours / TRL (> 1: ours is faster), ``*_cpu`` per CPU
second; the generation and update phases get the same ratio of their times.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator

from vla_rl.config import Config

TRL_INSTALL = 'pip install -c constraints.txt -e ".[bench]"'
Side = Literal["ours", "ours_noskip", "trl"]


class UpdateBenchConfig(Config):
    """`vla-rl bench update`: one GRPO step (generate, score, update), ours vs TRL, identical settings."""

    model: str = Field("small", description="LM preset (tiny, mini, small), random from-config weights")
    task: str = Field("sorting", description="text task (tasks.text)")
    difficulty: int = Field(1, ge=1)
    prompts: int = Field(16, ge=1, description="prompts per step")
    group_size: int = Field(8, ge=2, description="completions per prompt (G)")
    max_new_tokens: int = Field(48, ge=1, description="completion length; every row generates exactly this many")
    steps: int = Field(3, ge=1, description="measured steps per side")
    warmup: int = Field(1, ge=0, description="unmeasured steps before them")
    lr: float = Field(1e-4, gt=0)
    temperature: float = Field(1.0, gt=0)
    seed: int = 0
    threads: int | None = Field(
        1,
        ge=1,
        description="torch threads, both sides (None: torch's default). 1 by "
        "default: on a 2-core box shared with other jobs, 2 OpenMP threads stall each other",
    )
    sides: list[Side] = Field(
        ["ours", "ours_noskip", "trl"],
        min_length=1,
        description="which trainers to run: ours (zero-advantage skip on), ours_noskip (off), trl (bench extra)",
    )
    rewards: Literal["mixed", "verifier"] = Field(
        "mixed",
        description="mixed: the same seeded reward pattern on both sides (fraction `mixed_groups` of the groups "
        "mixed, the rest all 0); verifier: the task's checker (a random model often scores whole groups 0, and "
        "then our skip leaves nothing to update while TRL still runs its backward pass)",
    )
    mixed_groups: float = Field(0.5, ge=0, le=1, description="share of groups with mixed rewards (rewards=mixed)")
    out: str | None = Field("bench/results/update.json", description="results JSON (None: not written)")

    @field_validator("model")
    @classmethod
    def _preset(cls, v: str) -> str:
        from vla_rl.policies.lm.configuration_lm import lm_preset

        lm_preset(v)  # an unknown name raises with the valid ones
        return v

    @field_validator("task")
    @classmethod
    def _known(cls, v: str) -> str:
        from vla_rl.text_tasks import check_text_task

        return check_text_task(v)


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for pkg in ("torch", "transformers", "trl", "accelerate", "datasets"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _summary(steps: list[dict[str, float]], measured_from: int) -> dict[str, Any]:
    """Totals and rates over the measured steps (``steps[measured_from:]``)."""
    m = steps[measured_from:]
    tokens = sum(s["completion_tokens"] for s in m)
    step_s, gen_s, upd_s = (sum(s[k] for s in m) for k in ("step_s", "generation_s", "update_s"))
    sample_s = sum(s["sampling_s"] for s in m)
    cpu_s = sum(s["step_cpu_s"] for s in m)
    return {
        "tokens_per_s": round(tokens / step_s, 1),
        "tokens_per_cpu_s": round(tokens / cpu_s, 1),
        "generation_tokens_per_s": round(tokens / gen_s, 1),
        "update_tokens_per_s": round(tokens / upd_s, 1),
        "mean_step_s": round(step_s / len(m), 3),
        "median_step_s": round(statistics.median(s["step_s"] for s in m), 3),
        "mean_generation_s": round(gen_s / len(m), 3),
        "mean_sampling_s": round(sample_s / len(m), 3),
        "mean_update_s": round(upd_s / len(m), 3),
        "generation_share": round(gen_s / step_s, 3),
        "completion_tokens_per_step": [int(s["completion_tokens"]) for s in steps],
        "prompt_tokens_per_step": [int(s["prompt_tokens"]) for s in steps],
        "informative_frac_per_step": [round(s["informative_frac"], 3) for s in steps],
        "steps": [{k: round(v, 4) for k, v in s.items()} for s in steps],
    }


def _check_lengths(cfg: UpdateBenchConfig, side: str, steps: list[dict[str, float]]) -> None:
    want = cfg.prompts * cfg.group_size * cfg.max_new_tokens
    got = [int(s["completion_tokens"]) for s in steps]
    if any(g != want for g in got):
        raise RuntimeError(f"{side}: completion tokens per step {got}, expected {want} (fixed-length generation)")


def make_init(cfg: UpdateBenchConfig, folder: Path) -> Path:
    """The one set of from-config weights (and tokenizer) both sides start from."""
    from vla_rl.policies.lm.modeling_lm import LMPolicy

    LMPolicy.from_config(cfg.model, tasks=[cfg.task], seed=cfg.seed).save_pretrained(folder)
    return folder


def step_seeds(cfg: UpdateBenchConfig) -> list[list[int]]:
    """The train-split seeds of every step (warmup first), as our trainer draws them."""
    from vla_rl.splits import split_seeds

    return [split_seeds("train", cfg.prompts, i * cfg.prompts) for i in range(cfg.warmup + cfg.steps)]


def reward_pattern(cfg: UpdateBenchConfig, step: int) -> torch.Tensor:
    """The seeded rewards of step ``step``, (prompts, group_size) of 0/1: a share ``mixed_groups`` of the groups
    get between 1 and G-1 ones (every sample informative), the others all zeros (no sample informative)."""
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + step)
    out = torch.zeros(cfg.prompts, cfg.group_size)
    n_mixed = round(cfg.mixed_groups * cfg.prompts)
    for row in torch.randperm(cfg.prompts, generator=g)[:n_mixed].tolist():
        ones = int(torch.randint(1, cfg.group_size, (1,), generator=g))
        out[row, torch.randperm(cfg.group_size, generator=g)[:ones]] = 1.0
    return out


def informative_fraction(rewards: torch.Tensor, group_size: int) -> float:
    """Share of samples whose group-normalised advantage is nonzero (their group's rewards are not all equal)."""
    groups = rewards.reshape(-1, group_size)
    return float((groups != groups.mean(1, keepdim=True)).float().mean())


def _pattern_rows(r: Any, pattern: torch.Tensor) -> torch.Tensor:
    """The pattern laid on our rollout's rows: the k-th group to appear gets row k, its samples in order."""
    order = {g: k for k, g in enumerate(dict.fromkeys(r.group.tolist()))}
    seen: dict[int, int] = {}
    out = torch.empty(len(r.group))
    for i, g in enumerate(r.group.tolist()):
        out[i] = pattern[order[g], seen.get(g, 0)]
        seen[g] = seen.get(g, 0) + 1
    return out.to(r.reward.dtype)


def ours_config(cfg: UpdateBenchConfig, init: Path, workdir: Path, name: str = "ours") -> Any:
    """The `TextGRPOConfig` of our side: one optimizer step over the whole batch per iteration, no KL, no eval."""
    from vla_rl.trainers.text_grpo import TextGRPOConfig

    batch = cfg.prompts * cfg.group_size
    return TextGRPOConfig(
        tasks=[cfg.task],
        difficulty=cfg.difficulty,
        init=str(init),
        out=str(workdir / name),
        iterations=cfg.warmup + cfg.steps,
        sampling={"seeds_per_iter": cfg.prompts, "group_size": cfg.group_size, "temperature": cfg.temperature},
        max_new_tokens=cfg.max_new_tokens,
        loss={"advantage": "grpo", "name": "ppo_clip", "kwargs": {"eps_low": 0.2, "eps_high": 0.28},
              "agg_mode": "token-mean", "kl_coef": 0.0},
        optim={"lr": cfg.lr, "grad_clip": 1.0, "epochs": 1, "minibatch_size": batch},
        eval={"episodes": 0},
        checkpoint={"every": 10**6},
        holdout=0,
        seed=cfg.seed,
        threads=cfg.threads,
    )


def run_ours(cfg: UpdateBenchConfig, init: Path, workdir: Path, skip: bool = True) -> list[dict[str, float]]:
    """Our `GRPOTrainer` (text backend), stepped as ``train()`` does; per-step timings, token counts and the
    informative fraction. ``skip``: the zero-advantage skip (off: every sample's forward and backward run)."""
    from vla_rl.trainers.grpo import GRPOTrainer

    trainer = GRPOTrainer(ours_config(cfg, init, workdir, "ours" if skip else "ours_noskip"))
    trainer.policy.stop_ids = [-1]  # never matches a sampled id: every row generates max_new_tokens tokens
    trainer.skip_zero_advantage = skip
    expected = step_seeds(cfg)
    steps = []
    try:
        for i in range(cfg.warmup + cfg.steps):
            t0, c0 = time.perf_counter(), time.process_time()
            r = trainer.rollout()
            if cfg.rewards == "mixed":  # inside the generation timer, as TRL's reward function is
                r.reward = _pattern_rows(r, reward_pattern(cfg, i))
            t1 = time.perf_counter()
            metrics = trainer.learn(r)  # update + the weights version the next rollout checks
            t2, c2 = time.perf_counter(), time.process_time()
            trainer.iteration += 1
            if r.seeds != [s for s in expected[i] for _ in range(cfg.group_size)]:
                raise RuntimeError(f"ours: step {i} rolled out seeds {sorted(set(r.seeds))}, expected {expected[i]}")
            steps.append(
                {
                    "step_s": t2 - t0,
                    "step_cpu_s": c2 - c0,
                    "generation_s": t1 - t0,
                    "sampling_s": r.policy_s,
                    "update_s": t2 - t1,
                    "completion_tokens": float(r.token_mask.sum()),
                    "prompt_tokens": float(r.attention_mask.sum()),
                    "informative_frac": 1.0 - metrics["actor/zero_advantage_frac"],
                }
            )
    finally:
        trainer.close()
    return steps


def _timed(fn: Callable[..., Any], sink: list[float], after: Callable[[Any], None] | None = None) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        sink.append(time.perf_counter() - t0)
        if after is not None:
            after(out)
        return out

    return wrapper


def trl_args(cfg: UpdateBenchConfig, workdir: Path) -> Any:
    """TRL's `GRPOConfig` for the same work as `ours_config` (see the module docstring)."""
    from trl import GRPOConfig

    batch = cfg.prompts * cfg.group_size
    return GRPOConfig(
        output_dir=str(workdir / "trl"),
        max_steps=cfg.warmup + cfg.steps,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        num_generations=cfg.group_size,
        max_completion_length=cfg.max_new_tokens,
        generation_kwargs={"min_new_tokens": cfg.max_new_tokens},
        temperature=cfg.temperature,
        top_k=0,
        top_p=1.0,
        beta=0.0,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        scale_rewards="group",
        learning_rate=cfg.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        adam_beta1=0.9,
        adam_beta2=0.95,
        weight_decay=0.0,
        max_grad_norm=1.0,
        shuffle_dataset=False,
        seed=cfg.seed,
        use_cpu=True,
        bf16=False,
        fp16=False,
        activation_checkpointing=False,  # TRL's default is True (its `gradient_checkpointing`)
        use_vllm=False,
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        log_completions=False,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
    )

def trl_data(cfg: UpdateBenchConfig) -> tuple[Any, Callable[..., list[float]]]:
    """The prompts of every step in order (a `datasets.Dataset` with their seeds) and the task's verifier."""
    from datasets import Dataset

    from vla_rl.rollout.text import default_reward
    from vla_rl.text_tasks import make_text_task, prompt_text

    task = make_text_task(cfg.task)
    seeds = [s for step in step_seeds(cfg) for s in step]
    data = Dataset.from_dict(
        {"prompt": [prompt_text(task, task.generate(s, cfg.difficulty)) for s in seeds], "seed": seeds}
    )

    def verifier(prompts: list[str], completions: list[str], seed: list[int], **_: Any) -> list[float]:
        rewards = [
            default_reward(task, task.generate(s, cfg.difficulty), c) for s, c in zip(seed, completions, strict=True)
        ]
        if cfg.rewards == "mixed":  # the same pattern as ours; rows come as each prompt's G completions in turn
            step = seeds.index(seed[0]) // cfg.prompts
            rewards = reward_pattern(cfg, step).flatten().tolist()
        verifier.informative.append(informative_fraction(torch.tensor(rewards), cfg.group_size))
        return rewards

    verifier.informative = []  # type: ignore[attr-defined]
    return data, verifier


def time_trl(trainer: Any) -> dict[str, list]:
    """Timers on a TRL trainer: per optimizer step (a callback), per generation + scoring and per sampling call
    (wrapped on the instance), and the completion / prompt token counts of each generation."""
    from transformers import TrainerCallback

    sinks: dict[str, list] = {"step_s": [], "step_cpu_s": [], "gen_s": [], "sample_s": [], "counts": []}

    def count(out: dict[str, Any]) -> None:
        sinks["counts"].append((float(out["completion_mask"].sum()), float(out["prompt_mask"].sum())))

    trainer._generate_and_score_completions = _timed(trainer._generate_and_score_completions, sinks["gen_s"], count)
    trainer._generate_single_turn = _timed(trainer._generate_single_turn, sinks["sample_s"])

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.t0, self.c0 = time.perf_counter(), time.process_time()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            sinks["step_s"].append(time.perf_counter() - self.t0)
            sinks["step_cpu_s"].append(time.process_time() - self.c0)

    trainer.add_callback(StepTimer())
    return sinks


def run_trl(cfg: UpdateBenchConfig, init: Path, workdir: Path) -> list[dict[str, float]]:
    """TRL's `GRPOTrainer` on the same weights, prompts and settings; per-step timings and token counts."""
    from vla_rl.availability import DependencyNotInstalled, is_available

    if not is_available("trl"):
        raise DependencyNotInstalled(f"trl is not installed; run: {TRL_INSTALL} (the bench extra)")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOTrainer

    data, verifier = trl_data(cfg)
    args = trl_args(cfg, workdir)
    model = AutoModelForCausalLM.from_pretrained(str(init), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(init))
    trainer = GRPOTrainer(model=model, reward_funcs=verifier, args=args, train_dataset=data, processing_class=tokenizer)
    if trainer.model.is_activation_checkpointing:
        raise RuntimeError("trl: activation checkpointing is on; the two sides would not do the same work")

    t = time_trl(trainer)
    trainer.train()
    step_s, cpu_s, gen_s, sample_s, counts = t["step_s"], t["step_cpu_s"], t["gen_s"], t["sample_s"], t["counts"]
    n = cfg.warmup + cfg.steps
    if not len(step_s) == len(gen_s) == len(sample_s) == n:
        raise RuntimeError(
            f"trl: {len(step_s)} steps, {len(gen_s)} generations, {len(sample_s)} sampling calls; "
            f"expected {n} each (one generation per optimizer step)"
        )
    return [
        {"step_s": s, "step_cpu_s": u, "generation_s": g, "sampling_s": q, "update_s": s - g, "completion_tokens": c,
         "prompt_tokens": p, "informative_frac": f}
        for s, u, g, q, (c, p), f in zip(step_s, cpu_s, gen_s, sample_s, counts, verifier.informative, strict=True)
    ]


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3)


def run_update_bench(cfg: UpdateBenchConfig) -> dict[str, Any]:
    """Run the sides of ``cfg``; returns (and writes to ``cfg.out``) the results document."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    threads = torch.get_num_threads()
    load: dict[str, list[float]] = {"start": _load()}
    results: dict[str, Any] = {"ours": None, "ours_noskip": None, "trl": None}
    runners = {"ours": run_ours, "ours_noskip": lambda *a: run_ours(*a, skip=False), "trl": run_trl}
    with tempfile.TemporaryDirectory(prefix="vla_rl_update_bench_") as tmp:
        init = make_init(cfg, Path(tmp) / "init")
        for side in cfg.sides:
            torch.set_num_threads(threads)
            load[f"{side}_before"] = _load()
            steps = runners[side](cfg, init, Path(tmp))
            load[f"{side}_after"] = _load()
            _check_lengths(cfg, side, steps)
            results[side] = _summary(steps, cfg.warmup)
    ours, trl, noskip = results["ours"], results["trl"], results["ours_noskip"]
    both = ours is not None and trl is not None
    doc = {
        **results,
        "ratio_ours_noskip_over_trl": _ratio(noskip["tokens_per_s"], trl["tokens_per_s"])
        if noskip is not None and trl is not None
        else None,
        "ratio_ours_over_trl_cpu": _ratio(ours["tokens_per_cpu_s"], trl["tokens_per_cpu_s"]) if both else None,
        "ratio_ours_noskip_over_trl_cpu": _ratio(noskip["tokens_per_cpu_s"], trl["tokens_per_cpu_s"])
        if noskip is not None and trl is not None
        else None,
        "ratio_ours_over_trl": _ratio(ours["tokens_per_s"], trl["tokens_per_s"]) if both else None,
        "ratio_ours_over_trl_generation": _ratio(trl["mean_generation_s"], ours["mean_generation_s"]) if both else None,
        "ratio_ours_over_trl_sampling": _ratio(trl["mean_sampling_s"], ours["mean_sampling_s"]) if both else None,
        "ratio_ours_over_trl_update": _ratio(trl["mean_update_s"], ours["mean_update_s"]) if both else None,
        "same_prompt_tokens": ours["prompt_tokens_per_step"] == trl["prompt_tokens_per_step"] if both else None,
        "settings": {
            **cfg.model_dump(exclude={"out", "sides"}),
            "sides": list(cfg.sides),
            "completion_tokens_per_step": cfg.prompts * cfg.group_size * cfg.max_new_tokens,
            "batch": cfg.prompts * cfg.group_size,
            "torch_threads": threads,
            "fixed_length": "TRL: generation_kwargs min_new_tokens=max_new_tokens; ours: policy.stop_ids=[-1]",
            "tokens_per_s": "generated completion tokens / seconds of the full step (generate + score + "
            "update), over the measured steps",
            "ratios": "ours / TRL throughput (> 1: ours faster); per phase: TRL time / our time; "
            "ratio_ours_noskip_over_trl: ours with the zero-advantage skip off; *_cpu: the same over the process's "
            "CPU seconds (time.process_time), which other jobs on a shared machine disturb far less than wall time",
            "informative_frac": "share of samples with a nonzero advantage (group rewards not all equal), per step",
        },
        "versions": _versions(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch_threads": threads,
            "load_average_1_5_15": load,
        },
    }
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(doc, indent=2))
    return doc


def print_table(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    s = doc["settings"]
    table = Table(
        title=f"GRPO step: {s['model']} LM, {s['task']} d{s['difficulty']}, {s['prompts']} prompts x "
        f"{s['group_size']} x {s['max_new_tokens']} tokens, {s['steps']} steps, "
        f"{s['torch_threads']} threads"
    )
    for col in ("side", "tokens/s", "step s", "generation s", "(sampling s)", "update s", "gen share", "informative"):
        table.add_column(col, justify="right")
    for side in ("ours", "ours_noskip", "trl"):
        r = doc[side]
        if r is not None:
            table.add_row(
                side,
                f"{r['tokens_per_s']:.0f}",
                f"{r['mean_step_s']:.2f}",
                f"{r['mean_generation_s']:.2f}",
                f"{r['mean_sampling_s']:.2f}",
                f"{r['mean_update_s']:.2f}",
                f"{r['generation_share']:.0%}",
                " ".join(f"{f:.2f}" for f in r["informative_frac_per_step"]),
            )
    if doc["ratio_ours_over_trl"] is not None:
        table.add_row(
            "ours/TRL",
            f"{doc['ratio_ours_over_trl']:.2f}x",
            "",
            f"{doc['ratio_ours_over_trl_generation']:.2f}x",
            f"{doc['ratio_ours_over_trl_sampling']:.2f}x",
            f"{doc['ratio_ours_over_trl_update']:.2f}x",
            "",
            "",
        )
    if doc["ratio_ours_noskip_over_trl"] is not None:
        table.add_row("ours (no skip)/TRL", f"{doc['ratio_ours_noskip_over_trl']:.2f}x", *[""] * 6)
    if doc["ratio_ours_over_trl_cpu"] is not None:
        console_note = (f"per CPU second: ours/TRL {doc['ratio_ours_over_trl_cpu']:.2f}x, "
                        f"ours (no skip)/TRL {doc.get('ratio_ours_noskip_over_trl_cpu') or float('nan'):.2f}x")
        table.caption = console_note
    console = Console() if sys.stdout.isatty() else Console(width=120)
    console.print(table)
    console.print(f"load average (1, 5, 15 min): {doc['machine']['load_average_1_5_15']}")


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import parse_args

    cfg = parse_args(UpdateBenchConfig, list(sys.argv[1:] if argv is None else argv), "bench update")
    doc = run_update_bench(cfg)  # type: ignore[arg-type]
    print_table(doc)
    if cfg.out:
        print(f"wrote {cfg.out}")


if __name__ == "__main__":
    main()
