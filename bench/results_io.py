"""Results files that several benches share (``bench/results/env.json``: one top-level key per backend), and their
figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def merge_result(out: str | Path, key: str, row: dict[str, Any]) -> None:
    """Write ``row`` under ``key`` of the JSON file ``out``, keeping every other key already there."""
    path = Path(out)
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc[key] = row
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write_json(path: str | Path, doc: dict[str, Any]) -> None:
    """Write a bench's own results file ``path`` atomically (its folder made)."""
    from vla_rl.utils.io import atomic_write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, doc)


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Lay out and write a matplotlib figure to ``path`` (PNG, its folder made), then close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)


def run_or_read(job: Any, console: Any, title: str) -> dict[str, Any]:
    """The results of a quickstart-type ``job``: its ``<out>/results.json`` when a finished run left one there (an
    interrupted bench continues), else those of running it now (announced as ``title``)."""
    done = Path(job.out) / "results.json"
    if done.is_file():
        return json.loads(done.read_text())
    if console is not None:
        console.print(f"[bold]{title}[/] -> {job.out}")
    return job.run(console)
