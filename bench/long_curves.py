"""The long-horizon task's GRPO curves (issue 34) from the runs' records: rollout success per iteration of runs 1-4
(`bench/results/long_grpo_rung1.json`, from the SFT) and of the runs continued from run 4's last checkpoint
(`bench/results/long_grpo_rung2.json`), each drawn from the iteration of the checkpoint it started from, with the
curriculum's rung of each iteration. -> docs/img/long_grpo_curves.png

    python -m bench.long_curves
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.results_io import save_figure

RESULTS = Path(__file__).parent / "results"
FIGURE = Path(__file__).parent.parent / "docs" / "img" / "long_grpo_curves.png"


def plot_long_curves(rung1: dict[str, Any], rung2: dict[str, Any], out: str | Path = FIGURE) -> Path:
    """Rollout success (top) and the rung's range fraction (bottom) against GRPO iterations from the SFT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[3, 1])
    for i, run in enumerate(rung1["runs"], start=1):
        xs = range(1, run["iterations"] + 1)
        top.plot(xs, run["rollout_success"], lw=1, label=f"run {i} (from the SFT)")
        bottom.plot(xs, [0.1] * run["iterations"], lw=1)
    for run in rung2["runs"]:  # each from a checkpoint of an earlier run: its iteration counted from the SFT
        start = run["from_iteration"]
        xs = range(start + 1, start + run["iterations"] + 1)
        top.plot(xs, run["rollout_success"], lw=1, label=f"run {run['name']} (lr {run['lr']:g}, from {run['init']})")
        bottom.plot(xs, run["rung_spread"], lw=1)
    top.set_ylabel("rollout success (T 0.7)")
    top.set_title("PlaceThenOpenDrawer from one demo: GRPO on the curriculum's rungs (full-task validation: 0%)")
    top.legend(fontsize=8)
    bottom.set_ylabel("rung (range fraction)")
    bottom.set_xlabel("GRPO iteration (128 rollouts each; runs 1-3: 64)")
    return save_figure(fig, out)


def main() -> None:
    rung1 = json.loads((RESULTS / "long_grpo_rung1.json").read_text())
    rung2 = json.loads((RESULTS / "long_grpo_rung2.json").read_text())
    print(plot_long_curves(rung1, rung2))


if __name__ == "__main__":
    main()
