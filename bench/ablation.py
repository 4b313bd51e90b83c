"""`vla-rl bench ablation`: GRPO variants at a fixed budget from one SFT checkpoint, judged on test seeds.

Every variant starts from the same checkpoint (by default the quickstart's one-demo SFT policy), runs the
same number of iterations with the same seed, and its last policy is evaluated greedily on the same
test-split seeds. The variants (DAPO's ablation order, plus SimpleVLA-RL's sampling temperature):

- ``grpo``: GRPO, symmetric clip 0.2, no dynamic sampling, temperature 1.0;
- ``+dynamic_sampling``: drop groups whose rewards are all equal and resample (DAPO);
- ``+clip_higher``: and eps_high 0.28 (DAPO);
- ``+clip_higher_t1.6``: the same at temperature 1.6 (SimpleVLA-RL's default);
- ``clip_higher_only``: clip-higher without dynamic sampling at 1.0 (the ``make train`` preset).

Writes ``bench/results/ablation.json`` and prints a markdown table (pasted into docs/ablation.md).
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from vla_rl.config import Config, deep_merge, load_config
from vla_rl.envs import EnvConfig

VARIANTS: dict[str, dict[str, Any]] = {
    "grpo": {"sampling": {"dynamic_sampling": False, "temperature": 1.0},
             "loss": {"kwargs": {"eps_low": 0.2, "eps_high": 0.2}}},
    "+dynamic_sampling": {"sampling": {"dynamic_sampling": True, "temperature": 1.0},
                          "loss": {"kwargs": {"eps_low": 0.2, "eps_high": 0.2}}},
    "+clip_higher": {"sampling": {"dynamic_sampling": True, "temperature": 1.0},
                     "loss": {"kwargs": {"eps_low": 0.2, "eps_high": 0.28}}},
    "+clip_higher_t1.6": {"sampling": {"dynamic_sampling": True, "temperature": 1.6},
                          "loss": {"kwargs": {"eps_low": 0.2, "eps_high": 0.28}}},
    "clip_higher_only": {"sampling": {"dynamic_sampling": False, "temperature": 1.0},
                         "loss": {"kwargs": {"eps_low": 0.2, "eps_high": 0.28}}},
}


class AblationConfig(Config):
    """`vla-rl bench ablation`: GRPO variants at a fixed budget."""

    init: str = Field("runs/quickstart/sft/best", description="SFT checkpoint every variant starts from")
    base: str = Field("configs/quickstart.yaml", description="quickstart preset whose grpo keys and tasks are used")
    variants: list[str] = Field(default_factory=lambda: list(VARIANTS))
    iterations: int = Field(12, ge=1, description="the fixed budget, GRPO iterations per variant")
    grpo: dict[str, Any] = Field(default_factory=dict, description="GRPO keys set for every variant on top of "
                                 "the preset's (e.g. grpo.threads=1 beside another job)")
    test_episodes: int = Field(200, ge=1)
    out: str = "runs/ablation"
    results: str = "bench/results/ablation.json"
    env: EnvConfig = Field(default_factory=lambda: EnvConfig(num_envs=50))


def run_ablation(cfg: AblationConfig, console: Any = None) -> dict[str, Any]:
    from vla_rl.evaluation import evaluate_policy
    from vla_rl.policies.vla.modeling_vla import VLAPolicy
    from vla_rl.trainers.grpo import GRPOConfig
    from vla_rl.trainers.quickstart import QuickstartConfig
    from vla_rl.utils.io import atomic_write_json

    unknown = [v for v in cfg.variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; valid: {', '.join(VARIANTS)}")
    qs = load_config(QuickstartConfig, cfg.base)
    before = evaluate_policy(VLAPolicy.from_pretrained(cfg.init).eval(), qs.tasks, "test", cfg.test_episodes,
                             cfg.env)
    rows: dict[str, Any] = {}
    base_rates = {t: v["success"] for t, v in before.items()}
    result = {"tasks": qs.tasks, "init": cfg.init, "iterations": cfg.iterations, "test_episodes": cfg.test_episodes,
              "grpo": cfg.grpo, "before": {"success": base_rates, "mean": sum(base_rates.values()) / len(base_rates)},
              "variants": rows, "machine": platform.platform()}
    for name in cfg.variants:
        keys = deep_merge(qs.grpo.model_dump(exclude_unset=True), cfg.grpo, VARIANTS[name], {
            "iterations": cfg.iterations, "eval": {"episodes": 0}, "tasks": qs.tasks, "init": cfg.init,
            "checkpoint": {"every": cfg.iterations, "overwrite": True}, "out": str(Path(cfg.out) / name.strip("+"))})
        t0 = time.time()
        summary = GRPOConfig.model_validate(keys).run(console)
        after = evaluate_policy(VLAPolicy.from_pretrained(Path(keys["out"]) / "last").eval(), qs.tasks, "test",
                                cfg.test_episodes, cfg.env)
        rates = {t: v["success"] for t, v in after.items()}
        rows[name] = {"success": rates, "mean": sum(rates.values()) / len(rates), "env_steps": summary["env_steps"],
                      "wall_s": time.time() - t0}
        if console is not None:
            console.print(f"{name}: mean test success {rows[name]['mean']:.1%}")
        result["variants"] = rows
        atomic_write_json(cfg.results, result)  # after every variant: a stopped run keeps what it measured
    print(markdown_table(result))
    return result


def markdown_table(result: dict[str, Any]) -> str:
    tasks = result["tasks"]
    head = "| variant | " + " | ".join(t.split("/")[-1] for t in tasks) + " | mean | change | env steps | wall (s) |"
    lines = [head, "|" + "---|" * (len(tasks) + 5)]
    b = result["before"]
    lines.append("| SFT (start) | " + " | ".join(f"{b['success'][t]:.1%}" for t in tasks)
                 + f" | {b['mean']:.1%} | | | |")
    for name, r in result["variants"].items():
        change = 100 * (r["mean"] - b["mean"])
        lines.append(f"| {name} | " + " | ".join(f"{r['success'][t]:.1%}" for t in tasks)
                     + f" | {r['mean']:.1%} | {change:+.1f} | {r['env_steps']} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    from rich.console import Console

    from vla_rl.cli import parse_args

    run_ablation(parse_args(AblationConfig, argv, "bench ablation"), Console(width=120))  # type: ignore[arg-type]
