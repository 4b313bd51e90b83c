"""The one atomic-write helper: the file appears whole under its name, a failed write leaves the old one."""

from __future__ import annotations

import pytest

from vla_rl.utils.io import atomic_write_bytes, atomic_write_file, atomic_write_json, fsync_dir, fsync_file


def test_atomic_write_file_renames_a_complete_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.bin"
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert tmp.parent == path.parent and tmp.name.startswith(".a.bin.tmp")
        tmp.write_bytes(b"new")

    assert atomic_write_file(path, write) == path
    assert path.read_bytes() == b"new" and not seen[0].exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.bin"]


def test_a_failed_write_keeps_the_old_version(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_json(path, {"v": 1})

    def dying(tmp):
        tmp.write_bytes(b"{half")
        raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        atomic_write_file(path, dying)
    assert path.read_text() == '{\n  "v": 1\n}'
    atomic_write_bytes(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"


def test_fsync_accepts_files_and_folders(tmp_path):
    (tmp_path / "f").write_text("x")
    fsync_file(tmp_path / "f")
    fsync_dir(tmp_path)
    fsync_dir(tmp_path / "missing")  # a folder that cannot be opened is tolerated
    with pytest.raises(FileNotFoundError):
        fsync_file(tmp_path / "missing")
