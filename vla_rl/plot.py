"""`vla-rl plot <run>`: training curves of a run folder (its metrics.jsonl) to one PNG."""

from __future__ import annotations

from pathlib import Path

from vla_rl.trainers.metrics import read_metrics

# (panel title, metric keys drawn in it); keys absent from the run are skipped
PANELS = (
    ("success", ("rollout/success", "rollout/reward", "eval/success")),
    ("reward / loss", ("loss/pg", "loss/ce")),
    ("entropy", ("actor/entropy", "rollout/policy_entropy")),
    ("update stability", ("actor/clip_frac", "actor/ppo_kl", "actor/token_acc")),
    ("throughput", ("perf/env_steps_per_s",)),
)


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw every panel that has data; returns the PNG path (default ``<run>/curves.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    if not (run_dir / "metrics.jsonl").is_file():
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl: not a vla-rl run folder")
    rows = read_metrics(run_dir)
    panels = [(t, [k for k in keys if any(k in r for r in rows)]) for t, keys in PANELS]
    panels = [(t, keys) for t, keys in panels if keys]
    if not panels:
        raise ValueError(f"{run_dir}/metrics.jsonl holds none of the plotted metrics")
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.4 * len(panels)), sharex=True, squeeze=False)
    for ax, (title, keys) in zip(axes[:, 0], panels, strict=True):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 40 else None, label=k)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step / iteration")
    fig.tight_layout()
    path = Path(out) if out else run_dir / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
