"""`vla-rl bench range`: the quickstart recipe at initial-state range fractions, lift against range (issue 34).

The same recipe at every fraction (`configs/quickstart.yaml`: one demo per task, the same pretraining demos, the
same SFT, the same GRPO budget): only the suite changes, to ``<full task>@spread=<f>`` for each of the
quickstart's three tasks (drawer / pick / push), the centred fraction ``f`` of every initial-state range
(`sims.mujoco.task.NarrowedRNG`) with the full task's step limit; ``f = 1`` is the full task. Every run tests
on 200 test seeds per task before and after RL (the quickstart's own test phases) with 95% Wilson intervals.

``seeds_widest`` seeds run at the widest fraction and ``seeds_other`` at the others (the issue: three at 1.0, one
elsewhere). Each run is a quickstart folder under ``out``; a run whose ``results.json`` exists is read, not run
again, so an interrupted bench continues where it stopped. Writes ``bench/results/range.json`` after every run
(the table so far) and, at the end, a plot of success before / after and the lift against the fraction.

Budget: 50 GRPO iterations a run (the quickstart's wall budget replaced by an iteration count, so that a run's
figures do not depend on the machine's load), ~20 min on 2 cores; the issue's grid (4 fractions, three seeds at
the widest) is 6 runs, about two hours.
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

FULL_TASKS = ["mujoco/OpenDrawer-v1", "mujoco/PickCube-v1", "mujoco/PushCube-v1"]


class BenchRangeConfig(Config):
    """`vla-rl bench range`: the quickstart at several initial-state range fractions."""

    fractions: list[float] = Field([0.1, 0.25, 0.5, 1.0], min_length=1, description="centred fractions of each "
                                   "initial-state range, in (0, 1]")
    seeds_widest: list[int] = Field([0, 1, 2], min_length=1, description="seeds (SFT and GRPO) at the widest fraction")
    seeds_other: list[int] = Field([0], min_length=1, description="seeds at the other fractions")
    config: str = Field("configs/quickstart.yaml", description="the recipe: a quickstart config")
    overrides: dict[str, Any] = Field(
        default_factory=lambda: {"time_budget_min": None, "grpo": {"iterations": 50}},
        description="quickstart keys changed for every run (nested). The default holds the RL budget fixed in "
        "iterations (50, what the quickstart's 19.5-minute budget fits on 2 cores) instead of wall time, so the "
        "figures do not depend on the machine's load")
    out: str = Field("runs/range", description="folder of the runs (one quickstart folder each)")
    results: str = "bench/results/range.json"
    plot: str | None = Field("docs/img/range.png", description="lift against range; None: no plot")


def suite(fraction: float) -> list[str]:
    """The quickstart's three tasks at ``fraction`` of their initial-state ranges (the full tasks at 1)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"range fraction must be in (0, 1], got {fraction}")
    from vla_rl.envs import variant_id

    return list(FULL_TASKS) if fraction == 1.0 else [variant_id(t, spread=fraction) for t in FULL_TASKS]


def run_config(cfg: BenchRangeConfig, fraction: float, seed: int) -> Any:
    """The quickstart config of one run: the recipe, its suite at ``fraction``, both phases seeded ``seed``."""
    from vla_rl.trainers.quickstart import QuickstartConfig

    data = deep_merge(yaml.safe_load(Path(cfg.config).read_text()), cfg.overrides)
    data = deep_merge(data, {"tasks": suite(fraction), "out": str(Path(cfg.out) / f"f{fraction:g}_s{seed}"),
                             "sft": {"seed": seed}, "grpo": {"seed": seed}})
    return QuickstartConfig.model_validate(data)


def plan(cfg: BenchRangeConfig) -> list[tuple[float, int]]:
    """(fraction, seed) of every run, narrowest first."""
    widest = max(cfg.fractions)
    return [(f, s) for f in sorted(cfg.fractions) for s in (cfg.seeds_widest if f == widest else cfg.seeds_other)]


def row(fraction: float, seed: int, results: dict[str, Any]) -> dict[str, Any]:
    """One run's line of the table: success before / after per task and their mean, intervals, lift, budget."""
    before, after = results["success_before"], results["success_after"]
    return {"fraction": fraction, "seed": seed, "before": before, "after": after,
            "ci95_before": results["ci95_before"], "ci95_after": results["ci95_after"],
            "lift": round(after["mean"] - before["mean"], 4), "grpo_iterations": results["grpo_iterations"],
            "env_steps": results["env_steps"], "wall_s": round(results["wall_s"], 1),
            "test_episodes": results["test_episodes"]}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per fraction: the mean before / after / lift over its seeds, and each seed's lift."""
    out = []
    for f in sorted({r["fraction"] for r in rows}):
        mine = [r for r in rows if r["fraction"] == f]
        before, after = (round(sum(r[k]["mean"] for r in mine) / len(mine), 4) for k in ("before", "after"))
        out.append({"fraction": f, "seeds": [r["seed"] for r in mine], "before": before, "after": after,
                    "lift": round(sum(r["lift"] for r in mine) / len(mine), 4),
                    "lift_per_seed": [r["lift"] for r in mine]})
    return out


def run_range_bench(cfg: BenchRangeConfig, console: Any = None) -> dict[str, Any]:
    """Every run of `plan` (reading the finished ones), the table written after each; returns the document."""
    rows: list[dict[str, Any]] = []
    t0, runs = time.time(), plan(cfg)
    for i, (fraction, seed) in enumerate(runs):
        job = run_config(cfg, fraction, seed)
        results = run_or_read(job, console, f"range {i + 1}/{len(runs)}: fraction {fraction:g}, seed {seed}")
        rows.append(row(fraction, seed, results))
        doc = document(cfg, rows, time.time() - t0)
        write_json(cfg.results, doc)
    if cfg.plot:
        doc["plot"] = str(plot_range(doc["summary"], cfg.plot))
        write_json(cfg.results, doc)
    return doc


def document(cfg: BenchRangeConfig, rows: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    return {"what": "the quickstart recipe at initial-state range fractions: success on test seeds before and after "
                    "RL per task (drawer / pick / push) and the lift, the RL budget held fixed",
            "tasks": FULL_TASKS, "recipe": cfg.config, "overrides": cfg.overrides,
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                        "load_average_1min_end": round(os.getloadavg()[0], 2)},
            "runs": rows, "summary": summarise(rows), "wall_s": round(wall_s, 1)}


def plot_range(summary: list[dict[str, Any]], path: str | Path) -> Path:
    """Mean success before / after RL and the lift against the range fraction, to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = [s["fraction"] for s in summary]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(f, [s["before"] for s in summary], "o-", label="before RL")
    ax.plot(f, [s["after"] for s in summary], "o-", label="after RL")
    ax.bar(f, [s["lift"] for s in summary], width=0.04, alpha=0.4, label="lift")
    ax.set_xlabel("fraction of each initial-state range")
    ax.set_ylabel("mean test success")
    ax.set_ylim(min(0.0, *[s["lift"] for s in summary]), 1.0)
    ax.legend()
    return save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import _console, parse_args

    cfg = parse_args(BenchRangeConfig, list(sys.argv[1:] if argv is None else argv), "bench range")
    doc = run_range_bench(cfg, _console())
    print(json.dumps(doc["summary"], indent=2))


if __name__ == "__main__":
    main()
