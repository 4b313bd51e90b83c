"""Atomic file and folder writes: a crash leaves the old version or the new one, never a mix.

Every fsync of the project goes through `fsync_file` / `fsync_dir`; every atomic file write through
`atomic_write_file` (a file written by a library: parquet, mp4) or `atomic_write_text` / `_bytes` / `_json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def fsync_file(path: str | Path) -> None:
    """Flush ``path``'s data to disk (a file, or a folder's entries)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (e.g. a rename inside it); a filesystem that refuses is tolerated."""
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories; rename stays atomic
        fsync_file(path)


def temp_sibling(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed to ``path`` (hidden, never ``*.<ext>``)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_write_file(path: str | Path, write: Callable[[Path], None], *, sync_dir: bool = True) -> Path:
    """Have ``write(tmp)`` create a temporary sibling, fsync it, rename it over ``path``, then (``sync_dir``)
    fsync the folder so the rename itself is durable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    write(tmp)
    fsync_file(tmp)
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(path.parent)
    return path


def _atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text or bytes) to a temporary sibling, fsync it, then rename it over ``path``."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)

    return atomic_write_file(path, write, sync_dir=False)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return _atomic_write(path, text)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return _atomic_write(path, bytes(data))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2))


def atomic_dir(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Fill a fresh temporary folder with ``write(tmp)``, then swap it into ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = path.with_name(f".{path.name}.old{os.getpid()}")
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path
