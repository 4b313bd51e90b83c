"""`vla-rl bench recipe`: a quickstart-type recipe (``configs/vla_grpo_full.yaml``, ``configs/vla_grpo_stack.yaml``)
over several seeds, with its test success before and after RL, its curves and where its curriculum got to.

Each seed is the recipe unchanged but for ``sft.seed`` and ``grpo.seed`` (and ``overrides``), in its own run folder
``<out>_s<seed>``; a run whose ``results.json`` exists is read, not run again, so an interrupted bench continues and a
run started by hand (``vla-rl train <recipe> out=<out>_s<seed> sft.seed=<seed> grpo.seed=<seed>``) is collected.
Writes ``results`` (per seed: success per task before / after on the test seeds with 95% Wilson intervals, the
lift, GRPO iterations, wall time, the curriculum's last fraction per task) after every run, and a plot of each
seed's validation success per task and curriculum fraction against the GRPO iteration.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from bench.results_io import run_or_read, save_figure, write_json
from vla_rl.config import Config, deep_merge


class BenchRecipeConfig(Config):
    """`vla-rl bench recipe`: one quickstart-type recipe over seeds."""

    config: str = Field("configs/vla_grpo_full.yaml", description="the recipe: a quickstart config")
    seeds: list[int] = Field([0, 1], min_length=1, description="seeds of SFT and GRPO, one run each")
    overrides: dict[str, Any] = Field(default_factory=dict, description="recipe keys changed for every run (nested)")
    out: str | None = Field(None, description="run folders <out>_s<seed> (default: the recipe's out)")
    results: str = Field("bench/results/full.json", description="the table")
    plot: str | None = Field("docs/img/full_curves.png", description="validation and curriculum curves; None: none")


def run_config(cfg: BenchRecipeConfig, seed: int) -> Any:
    """The quickstart config of seed ``seed``'s run."""
    from vla_rl.trainers.quickstart import QuickstartConfig

    data = deep_merge(yaml.safe_load(Path(cfg.config).read_text()), cfg.overrides)
    out = cfg.out or data.get("out", "runs/quickstart")
    data = deep_merge(data, {"out": f"{out}_s{seed}", "sft": {"seed": seed}, "grpo": {"seed": seed}})
    return QuickstartConfig.model_validate(data)


def curves(grpo_dir: Path) -> dict[str, Any]:
    """Per validated iteration: the validation success per task; per iteration: the curriculum fraction per task."""
    rows = [json.loads(x) for x in (grpo_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    val = [{"iteration": r["step"], **{k[5:-8]: round(v, 4) for k, v in r.items()
                                       if k.startswith("eval/") and k.endswith("/success") and k.count("/") > 1}}
           for r in rows if "eval/success" in r]
    spread = [{"iteration": r["step"], **{k[11:-7]: v for k, v in r.items() if k.startswith("curriculum/")}}
              for r in rows if any(k.startswith("curriculum/") for k in r)]
    return {"val": val, "spread": spread}


def row(seed: int, job: Any, results: dict[str, Any]) -> dict[str, Any]:
    """One seed's line: success before / after per task and the mean, intervals, lift, budget, curves."""
    c = curves(Path(job.out) / "grpo")
    return {"seed": seed, "out": job.out, "before": results["success_before"], "after": results["success_after"],
            "ci95_before": results["ci95_before"], "ci95_after": results["ci95_after"],
            "lift": round(results["success_after"]["mean"] - results["success_before"]["mean"], 4),
            "grpo_iterations": results["grpo_iterations"], "env_steps": results["env_steps"],
            "wall_s": round(results["wall_s"], 1), "phase_wall_s": results["phase_wall_s"],
            "test_episodes": results["test_episodes"], "best_checkpoint": results["grpo_checkpoint"],
            "last_spread": c["spread"][-1] if c["spread"] else None, "curves": c}


def run_recipe_bench(cfg: BenchRecipeConfig, console: Any = None) -> dict[str, Any]:
    """Every seed's run (reading the finished ones), the table written after each; returns the document."""
    rows: list[dict[str, Any]] = []
    t0 = time.time()
    for seed in cfg.seeds:
        job = run_config(cfg, seed)
        results = run_or_read(job, console, f"recipe {cfg.config}: seed {seed}")
        rows.append(row(seed, job, results))
        write_json(cfg.results, document(cfg, rows, time.time() - t0))
    doc = document(cfg, rows, time.time() - t0)
    if cfg.plot:
        doc["plot"] = str(plot_curves(rows, cfg.plot))
        write_json(cfg.results, doc)
    return doc


def document(cfg: BenchRecipeConfig, rows: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    lifts = [r["lift"] for r in rows]
    return {"what": f"the recipe {cfg.config} over seeds: success on test seeds before and after RL per task",
            "recipe": cfg.config, "overrides": cfg.overrides,
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "load_average_1min_end": round(os.getloadavg()[0], 2)},
            "runs": rows, "lift_per_seed": lifts, "lift_min": min(lifts), "wall_s": round(wall_s, 1)}


def plot_curves(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Per seed: validation success per task (top) and the curriculum fraction per task (bottom) against the GRPO
    iteration, to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(rows), figsize=(4.5 * len(rows), 5.5), sharex="col", squeeze=False)
    for j, r in enumerate(rows):
        val, spread = r["curves"]["val"], r["curves"]["spread"]
        for task in sorted({k for v in val for k in v} - {"iteration"}):
            axes[0, j].plot([v["iteration"] for v in val], [v.get(task) for v in val], "o-", ms=3,
                            label=task.split("/")[-1])
        for task in sorted({k for v in spread for k in v} - {"iteration"}):
            axes[1, j].step([v["iteration"] for v in spread], [v.get(task) for v in spread], where="post",
                            label=task.split("/")[-1])
        axes[0, j].set_title(f"seed {r['seed']}: lift {100 * r['lift']:+.1f} points")
        axes[0, j].set_ylabel("validation success")
        axes[1, j].set_ylabel("curriculum fraction")
        axes[1, j].set_xlabel("GRPO iteration")
        axes[0, j].set_ylim(0, 1)
        axes[1, j].set_ylim(0, 1.05)
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    return save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import _console, parse_args

    cfg = parse_args(BenchRecipeConfig, list(sys.argv[1:] if argv is None else argv), "bench recipe")
    doc = run_recipe_bench(cfg, _console())
    print(json.dumps({"lift_per_seed": doc["lift_per_seed"], "results": cfg.results}, indent=2))


if __name__ == "__main__":
    main()
