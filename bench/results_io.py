"""Results files that several benches share (``bench/results/env.json``: one top-level key per backend)."""

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
