"""Metrics to the console, TensorBoard and a JSONL file, under namespaces (``loss/ce``, ``rollout/success``)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Append one JSON line per ``log`` call to ``<run>/metrics.jsonl`` and mirror scalars to TensorBoard.

    Args:
        run_dir: the run folder.
        tensorboard: write TensorBoard event files under ``<run>/tb`` (needs the tensorboard package).
    """

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.run_dir / "metrics.jsonl", "a")  # noqa: SIM115 (closed in close())
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"))
        self._t0 = time.time()

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        row = {"step": step, "time_s": round(time.time() - self._t0, 3)}
        for k, v in metrics.items():
            v = float(v) if hasattr(v, "__float__") else v
            row[k] = v
            if self._tb is not None and isinstance(v, float) and math.isfinite(v):
                self._tb.add_scalar(k, v, step)
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All rows of ``<run>/metrics.jsonl`` (a torn last line from a crash is skipped)."""
    rows = []
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
