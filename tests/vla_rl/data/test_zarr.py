"""Diffusion-policy zarr replay buffer: layout, round trip, crash safety, validation errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from vla_rl.data import DatasetError
from vla_rl.data import zarr_buffer as zb
from vla_rl.data.zarr_buffer import ZarrWriter, read_zarr


def _write(root, eps, end=True):
    w = ZarrWriter(root, cameras=tuple(eps[0].frames))
    for ep in eps:
        w.start(ep.instruction, seed=ep.seed)
        for t in range(len(ep)):
            w.add_frame({**{c: ep.frames[c][t] for c in ep.frames}, "state": ep.state[t]}, ep.action[t],
                        bool(ep.step_success[t]))
        w.end_episode()
    if end:
        w.close()
    return w


def test_layout_matches_diffusion_policy(tmp_path, episodes):
    root = tmp_path / "buf.zarr"
    _write(root, episodes)
    assert json.loads((root / ".zgroup").read_text()) == {"zarr_format": 2}
    g = zarr.open_group(str(root), mode="r", zarr_format=2)
    assert sorted(g["data"].array_keys()) == ["action", "agentview", "state", "wrist"]
    ends = g["meta/episode_ends"][:]
    assert ends.dtype == np.int64 and ends.tolist() == [5, 14, 21]
    for cam in ("agentview", "wrist"):
        a = g["data"][cam]
        assert a.dtype == np.uint8 and a.shape == (21, 32, 48, 3) and a.chunks == (1, 32, 48, 3)
    assert g["data/state"].dtype == np.float32 and g["data/state"].shape == (21, 8)
    assert g["data/action"].dtype == np.float32 and g["data/action"].shape == (21, 7)
    meta = json.loads((root / "data/agentview/.zarray").read_text())
    assert meta["zarr_format"] == 2 and meta["compressor"]["id"] == "blosc"
    assert json.loads((root / "meta/episode_ends/.zarray").read_text())["compressor"] is None
    # what diffusion_policy.common.replay_buffer.ReplayBuffer.__init__ checks
    for _, arr in g["data"].arrays():
        assert arr[: ends[-1]].shape[0] == ends[-1]
    # ReplayBuffer.get_episode(i) slices rows [ends[i-1], ends[i])
    np.testing.assert_array_equal(g["data/action"][5:14], episodes[1].action)


def test_round_trip_exact(tmp_path, episodes):
    root = tmp_path / "buf.zarr"
    summary = _write(root, episodes).close()
    assert summary["episodes"] == 3 and summary["frames"] == 21
    data = read_zarr(root)
    assert len(data) == 3 and data.dropped == 0 and data.uncommitted_rows == 0
    assert data.cameras == ["agentview", "wrist"]
    for ours, back in zip(episodes, data, strict=True):
        np.testing.assert_array_equal(back.state, ours.state)
        np.testing.assert_array_equal(back.action, ours.action)
        for cam in ("agentview", "wrist"):
            np.testing.assert_array_equal(back.frames[cam], ours.frames[cam])
        assert (back.instruction, back.seed, back.success) == (ours.instruction, ours.seed, ours.success)


def test_killed_mid_episode_keeps_completed(tmp_path, episodes):
    root = tmp_path / "buf.zarr"
    w = _write(root, episodes[:2], end=False)
    w.start("never finished")
    ep = episodes[2]
    w.add_frame({"agentview": ep.frames["agentview"][0], "wrist": ep.frames["wrist"][0], "state": ep.state[0]},
                ep.action[0])
    data = read_zarr(root)  # no close(): as if killed
    assert len(data) == 2 and data.dropped == 1 and data.uncommitted_rows == 0
    np.testing.assert_array_equal(data[1].action, episodes[1].action)


def test_crash_before_episode_ends_commit(tmp_path, episodes, monkeypatch):
    root = tmp_path / "buf.zarr"
    real = zb.ZarrWriter._commit_episode_end

    def dying(self, end):
        if len(self._ends) == 2:
            raise KeyboardInterrupt("killed")  # data rows of episode 3 written, episode_ends not yet
        real(self, end)

    monkeypatch.setattr(zb.ZarrWriter, "_commit_episode_end", dying)
    with pytest.raises(KeyboardInterrupt):
        _write(root, episodes)
    g = zarr.open_group(str(root), mode="r", zarr_format=2)
    assert g["meta/episode_ends"][:].tolist() == [5, 14] and g["data/state"].shape[0] == 21
    data = read_zarr(root)
    assert len(data) == 2 and data.uncommitted_rows == 7 and data.dropped == 1
    np.testing.assert_array_equal(data[1].frames["wrist"], episodes[1].frames["wrist"])


def test_error_not_a_buffer(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DatasetError, match="no .zgroup"):
        read_zarr(tmp_path / "x")


def test_error_missing_episode_ends(tmp_path, episodes):
    root = tmp_path / "buf.zarr"
    _write(root, episodes)
    for p in (root / "meta/episode_ends").iterdir():
        p.unlink()
    (root / "meta/episode_ends").rmdir()
    with pytest.raises(DatasetError, match=r"meta/episode_ends: missing"):
        read_zarr(root)


def test_error_wrong_dtype(tmp_path, episodes):
    root = tmp_path / "buf.zarr"
    _write(root, episodes)
    g = zarr.open_group(str(root), mode="a", zarr_format=2)
    state = g["data/state"][:]
    del g["data/state"]
    g["data"].create_array("state", data=state.astype(np.float64), chunks=(1000, 8))
    with pytest.raises(DatasetError, match=r"data/state: must be float32 \(N, D\), got float64"):
        read_zarr(root)


def test_error_episode_ends_past_data(tmp_path, episodes):
    root = tmp_path / "buf.zarr"
    _write(root, episodes)
    g = zarr.open_group(str(root), mode="a", zarr_format=2)
    g["data/action"].resize((10, 7))
    with pytest.raises(DatasetError, match=r"data/action: holds 10 rows but meta/episode_ends\[-1\] = 21"):
        read_zarr(root)


def test_error_corrupt_chunk(tmp_path, episodes):
    root = tmp_path / "buf.zarr"
    _write(root, episodes)
    (root / "data/wrist/3.0.0.0").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"data/wrist: cannot read the array"):
        read_zarr(root)
