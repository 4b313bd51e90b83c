"""LeRobot v3.0 writer/reader: round trip, metadata, statistics, crash safety, validation errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vla_rl.data import DatasetError
from vla_rl.data import lerobot as lr
from vla_rl.data.lerobot import LeRobotWriter, read_lerobot, write_lerobot
from vla_rl.data.lerobot import writer as lr_writer
from vla_rl.utils.video import write_mp4


def _write(root, eps, **kw):
    return write_lerobot(root, eps, **kw)


def test_round_trip_lossless_is_exact(tmp_path, episodes):
    root = tmp_path / "ds"
    summary = _write(root, episodes)
    assert summary["episodes"] == 3 and summary["frames"] == 21 and summary["dropped"] == 0
    data = read_lerobot(root)
    assert len(data) == 3 and data.dropped == 0 and data.discarded == 0 and data.uncommitted == 0
    for ours, back in zip(episodes, data, strict=True):
        np.testing.assert_array_equal(back.state, ours.state)
        np.testing.assert_array_equal(back.action, ours.action)
        assert back.state.dtype == np.float32 and back.action.dtype == np.float32
        for cam in ("agentview", "wrist"):
            assert back.frames[cam].dtype == np.uint8
            np.testing.assert_array_equal(back.frames[cam], ours.frames[cam])  # lossless: bit-exact
        assert back.instruction == ours.instruction
        assert back.seed == ours.seed
        assert back.success == ours.success
        np.testing.assert_array_equal(back.step_success, ours.step_success)


def test_round_trip_lossy_within_bound(tmp_path, make_episodes):
    eps = make_episodes(lengths=(6, 8), sharp=False)
    _write(tmp_path / "ds", eps, lossless=False)
    data = read_lerobot(tmp_path / "ds")
    assert data.info["features"]["observation.images.wrist"]["info"]["video.pix_fmt"] == "yuv420p"
    for ours, back in zip(eps, data, strict=True):
        np.testing.assert_array_equal(back.action, ours.action)
        for cam in ("agentview", "wrist"):
            err = np.abs(back.frames[cam].astype(int) - ours.frames[cam].astype(int))
            # yuv420p crf 20 on smooth gradients: measured mean ~1.8, p99 6, max 13
            assert err.mean() < 3.0 and np.percentile(err, 99) <= 10 and err.max() <= 24


def test_metadata_matches_lerobot_v3_layout(tmp_path, episodes):
    root = tmp_path / "ds"
    _write(root, episodes)
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20
    assert info["total_episodes"] == 3 and info["total_frames"] == 21 and info["total_tasks"] == 2
    assert info["splits"] == {"train": "0:3"} and info["chunks_size"] == 1000
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    f = info["features"]
    assert f["observation.images.agentview"]["dtype"] == "video"
    assert f["observation.images.agentview"]["shape"] == [32, 48, 3]
    assert f["observation.images.agentview"]["names"] == ["height", "width", "channels"]
    assert f["observation.images.wrist"]["info"]["video.codec"] == "h264"
    assert f["observation.state"] == {"dtype": "float32", "shape": [8], "names": list(lr.STATE_NAMES)}
    assert f["action"] == {"dtype": "float32", "shape": [7], "names": list(lr.ACTION_NAMES)}
    assert f["next.success"]["dtype"] == "bool"
    for k, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                     ("index", "int64"), ("task_index", "int64")):
        assert f[k] == {"dtype": dtype, "shape": [1], "names": None}

    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert tasks.column("task_index").to_pylist() == [0, 1]
    assert tasks.column("__index_level_0__").to_pylist() == [episodes[0].instruction, episodes[1].instruction]
    assert b"pandas" in tasks.schema.metadata  # pandas restores the task text as the index, as LeRobot reads it

    ep = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["episode_index"] for r in ep] == [0, 1, 2]
    assert [r["length"] for r in ep] == [5, 9, 7]
    assert [(r["dataset_from_index"], r["dataset_to_index"]) for r in ep] == [(0, 5), (5, 14), (14, 21)]
    assert [r["tasks"] for r in ep] == [[e.instruction] for e in episodes]
    assert [r["seed"] for r in ep] == [1000, 1001, 1002] and [r["success"] for r in ep] == [True, True, False]
    for i, r in enumerate(ep):
        assert (r["data/chunk_index"], r["data/file_index"]) == (0, i)
        assert (r["meta/episodes/chunk_index"], r["meta/episodes/file_index"]) == (0, 0)
        for cam in ("agentview", "wrist"):
            k = f"videos/observation.images.{cam}"
            assert (r[f"{k}/chunk_index"], r[f"{k}/file_index"]) == (0, i)
            assert r[f"{k}/from_timestamp"] == 0.0 and r[f"{k}/to_timestamp"] == pytest.approx(r["length"] / 20)
        # per-episode stats columns, as LeRobot writes them
        np.testing.assert_allclose(r["stats/action/mean"], episodes[i].action.astype(np.float64).mean(0))
        assert r["stats/observation.images.wrist/count"] == [r["length"]]
        assert np.asarray(r["stats/observation.images.wrist/q99"]).shape == (3, 1, 1)

    data = pq.read_table(root / "data/chunk-000/file-001.parquet")
    assert data.column_names == ["observation.state", "action", "next.success", "timestamp", "frame_index",
                                 "episode_index", "index", "task_index"]
    assert data.schema.field("action").type == pa.list_(pa.float32(), 7)
    assert data.schema.field("timestamp").type == pa.float32()
    np.testing.assert_allclose(data.column("timestamp").to_numpy(), np.arange(9) / 20, rtol=1e-6)
    assert data.column("index").to_pylist() == list(range(5, 14))


def test_stats_equal_numpy(tmp_path, episodes):
    root = tmp_path / "ds"
    _write(root, episodes)
    stats = json.loads((root / "meta/stats.json").read_text())
    qs = {"q01": 0.01, "q10": 0.10, "q50": 0.5, "q90": 0.9, "q99": 0.99}
    for key, arrays in (("observation.state", [e.state for e in episodes]),
                        ("action", [e.action for e in episodes])):
        x = np.concatenate(arrays).astype(np.float64)
        s = stats[key]
        np.testing.assert_allclose(s["mean"], x.mean(0), rtol=1e-12)
        np.testing.assert_allclose(s["std"], x.std(0), rtol=1e-12)
        np.testing.assert_array_equal(s["min"], x.min(0))
        np.testing.assert_array_equal(s["max"], x.max(0))
        for name, q in qs.items():
            np.testing.assert_allclose(s[name], np.quantile(x, q, axis=0), rtol=1e-12)
        assert s["count"] == [21]
    for cam in ("agentview", "wrist"):
        px = np.concatenate([e.frames[cam] for e in episodes]).astype(np.float64) / 255.0
        s = stats[f"observation.images.{cam}"]
        for name, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max)):
            want = np.array([fn(px[..., c]) for c in range(3)]).reshape(3, 1, 1)
            np.testing.assert_allclose(s[name], want, rtol=1e-10, atol=1e-12)
        for name, q in qs.items():
            want = np.array([np.quantile(px[..., c], q) for c in range(3)]).reshape(3, 1, 1)
            np.testing.assert_allclose(s[name], want, rtol=1e-10, atol=1e-12)
        assert s["count"] == [21]
    assert stats["next.success"]["mean"] == [pytest.approx(2 / 21)]
    assert stats["episode_index"]["max"] == [2] and stats["index"]["max"] == [20]


def test_discard_and_dropped_counts(tmp_path, episodes):
    root = tmp_path / "ds"
    w = LeRobotWriter(root)
    for ep in episodes:
        w.start(ep.instruction, seed=ep.seed)
        for t in range(len(ep)):
            w.add_frame({**{c: ep.frames[c][t] for c in ep.frames}, "state": ep.state[t]}, ep.action[t])
        if ep.index == 1:
            w.discard_episode()
        else:
            w.end_episode()
    w.start("never finished")
    w.add_frame({"agentview": episodes[0].frames["agentview"][0], "wrist": episodes[0].frames["wrist"][0],
                 "state": episodes[0].state[0]}, episodes[0].action[0])
    # no close(): as if the process died here
    data = read_lerobot(root)
    assert len(data) == 2 and data.discarded == 1 and data.dropped == 1
    assert [e.seed for e in data] == [1000, 1002]
    np.testing.assert_array_equal(data[1].action, episodes[2].action)


def test_nothing_completed_reads_as_empty(tmp_path, episodes):
    root = tmp_path / "ds"
    w = LeRobotWriter(root)
    w.start("pick")  # killed before the first episode ended
    data = read_lerobot(root)
    assert len(data) == 0 and data.dropped == 1


def test_crash_between_data_and_metadata_keeps_committed_episodes(tmp_path, episodes, monkeypatch):
    root = tmp_path / "ds"
    real = lr_writer._write_parquet

    def dying(table, path):
        if "episodes" in str(path) and table.num_rows == 3:
            raise KeyboardInterrupt("killed")  # after episode 2's videos and data file were written
        real(table, path)

    monkeypatch.setattr(lr_writer, "_write_parquet", dying)
    with pytest.raises(KeyboardInterrupt):
        _write(root, episodes)
    assert (root / "data/chunk-000/file-002.parquet").exists()  # the orphan is on disk, unreferenced
    data = read_lerobot(root)
    assert len(data) == 2 and data.dropped == 1
    np.testing.assert_array_equal(data[1].frames["wrist"], episodes[1].frames["wrist"])


def test_refuses_to_overwrite_unless_asked(tmp_path, episodes):
    root = tmp_path / "ds"
    _write(root, episodes[:1])
    with pytest.raises(FileExistsError, match="overwrite=True"):
        _write(root, episodes)
    _write(root, episodes, overwrite=True)
    assert len(read_lerobot(root)) == 3
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(FileExistsError, match="does not look like a dataset"):
        LeRobotWriter(tmp_path / "notes", overwrite=True)


def test_writer_input_errors(tmp_path, episodes):
    w = LeRobotWriter(tmp_path / "ds")
    ep = episodes[0]
    obs = {"agentview": ep.frames["agentview"][0], "wrist": ep.frames["wrist"][0], "state": ep.state[0]}
    with pytest.raises(RuntimeError, match="start"):
        w.add_frame(obs, ep.action[0])
    w.start("pick")
    with pytest.raises(KeyError, match="wrist"):
        w.add_frame({"agentview": obs["agentview"], "state": obs["state"]}, ep.action[0])
    with pytest.raises(ValueError, match="uint8"):
        w.add_frame({**obs, "wrist": obs["wrist"].astype(np.float32)}, ep.action[0])
    with pytest.raises(ValueError, match="action"):
        w.add_frame(obs, np.full(7, np.nan))
    with pytest.raises(ValueError, match="no frames"):
        w.end_episode()


# ---- validation: every error names the file and the problem ----


@pytest.fixture
def written(tmp_path, episodes):
    root = tmp_path / "ds"
    _write(root, episodes)
    return root


def _expect(root, path_part, *words):
    with pytest.raises(DatasetError) as exc:
        read_lerobot(root)
    msg = str(exc.value)
    assert path_part in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_error_missing_info(written):
    (written / "meta/info.json").unlink()
    (written / "meta/vla_rl_progress.json").unlink()
    _expect(written, "meta/info.json", "missing")


def test_error_corrupted_info(written):
    p = written / "meta/info.json"
    p.write_text(p.read_text()[:200])
    _expect(written, "meta/info.json", "not valid JSON")


def test_error_info_missing_key(written):
    p = written / "meta/info.json"
    info = json.loads(p.read_text())
    del info["features"]
    p.write_text(json.dumps(info))
    _expect(written, "meta/info.json", "missing keys", "features")


def test_error_wrong_dtype(written):
    p = written / "data/chunk-000/file-001.parquet"
    t = pq.read_table(p)
    t = t.set_column(1, "action", pa.array(t.column("action").to_pylist(), type=pa.list_(pa.float64())))
    pq.write_table(t, p)
    _expect(written, "file-001.parquet", "'action'", "float32")


def test_error_missing_column(written):
    p = written / "data/chunk-000/file-000.parquet"
    pq.write_table(pq.read_table(p).drop_columns(["observation.state"]), p)
    _expect(written, "data/chunk-000/file-000.parquet", "missing column", "observation.state")


def test_error_missing_episode_column(written):
    p = written / "meta/episodes/chunk-000/file-000.parquet"
    pq.write_table(pq.read_table(p).drop_columns(["dataset_to_index"]), p)
    _expect(written, "meta/episodes/chunk-000/file-000.parquet", "missing columns", "dataset_to_index")


def test_error_truncated_parquet(written):
    p = written / "data/chunk-000/file-002.parquet"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    _expect(written, "data/chunk-000/file-002.parquet", "parquet", "truncated")


def test_error_truncated_mp4(written):
    p = written / "videos/observation.images.wrist/chunk-000/file-001.mp4"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    _expect(written, "observation.images.wrist/chunk-000/file-001.mp4", "decode")


def test_error_video_frame_count_disagrees(written, episodes):
    p = written / "videos/observation.images.agentview/chunk-000/file-002.mp4"
    write_mp4(p, episodes[2].frames["agentview"][:-2], lossless=True)
    _expect(written, "observation.images.agentview/chunk-000/file-002.mp4", "holds 5 frames", "length 7")


def test_error_missing_video(written):
    shutil.rmtree(written / "videos/observation.images.wrist")
    _expect(written, "observation.images.wrist/chunk-000/file-000.mp4", "missing")


def test_error_rows_disagree_with_length(written):
    p = written / "data/chunk-000/file-000.parquet"
    t = pq.read_table(p)
    pq.write_table(t.slice(0, 3), p)
    _expect(written, "data/chunk-000/file-000.parquet", "holds 3 rows of episode 0", "length is 5")


def test_cameras_may_differ_in_size(tmp_path, make_frames):
    from vla_rl.data import Episode

    ep = Episode(frames={"agentview": make_frames(4), "wrist": make_frames(4, h=16, w=16)},
                 state=np.zeros((4, 8), np.float32), action=np.zeros((4, 7), np.float32), instruction="look")
    write_lerobot(tmp_path / "ds", [ep])
    data = read_lerobot(tmp_path / "ds")
    assert data.info["features"]["observation.images.wrist"]["shape"] == [16, 16, 3]
    np.testing.assert_array_equal(data[0].frames["wrist"], ep.frames["wrist"])
    w = LeRobotWriter(tmp_path / "odd")
    w.start("x")
    with pytest.raises(ValueError, match="even image sides"):
        w.add_frame({"agentview": make_frames(1, h=15)[0], "wrist": make_frames(1)[0], "state": np.zeros(8)},
                    np.zeros(7))
