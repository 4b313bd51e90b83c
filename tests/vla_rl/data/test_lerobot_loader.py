"""LeRobot's own loader (lerobot 0.4.4 ``LeRobotDataset``) reads the datasets we write.

Runs only where the side venv exists (``/work/shared/tools/lerobot-side-venv DIR`` builds it; LeRobot needs a
torch/torchvision pair that cannot live in the project's venv); set ``LEROBOT_SIDE_VENV`` to its folder.
LeRobot decodes video with torchcodec, which needs the system FFmpeg libraries (Debian: ``apt-get install
libavcodec59 libavformat59 libavutil57 libswscale6 libswresample4 libavfilter8 libavdevice59``).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vla_rl.data.lerobot import LeRobotWriter, read_lerobot, write_lerobot
from vla_rl.data.lerobot import writer as lr_writer


def _side_python() -> Path | None:
    candidates = [os.environ.get("LEROBOT_SIDE_VENV"),
                  str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lerobot-side-venv"),
                  "/root/.cache/lerobot-side-venv"]
    for c in candidates:
        if c and (Path(c) / "bin" / "python").is_file():
            return Path(c) / "bin" / "python"
    return None


PYTHON = _side_python()
pytestmark = pytest.mark.skipif(PYTHON is None, reason="LeRobot side venv not found (build it with "
                                "/work/shared/tools/lerobot-side-venv, or set LEROBOT_SIDE_VENV); CI has none")

SCRIPT = r"""
import json, sys
try:
    from torchcodec.decoders import VideoDecoder
    VideoDecoder(sys.argv[3])
except Exception as e:
    if "libtorchcodec" in str(e) or "FFmpeg" in str(e):
        print(json.dumps({"skip": "torchcodec cannot load the FFmpeg libraries: " + str(e)[:200]})); sys.exit(0)
    raise
from lerobot.datasets.lerobot_dataset import LeRobotDataset
out = {}
for name, root in (("clean", sys.argv[1]), ("crashed", sys.argv[2])):
    ds = LeRobotDataset("local/" + name, root=root)
    r = {"len": len(ds), "episodes": ds.num_episodes, "fps": ds.fps}
    for idx in (0, len(ds) - 1):
        item = ds[idx]
        r[str(idx)] = {k: (v if isinstance(v, str) else v.tolist()) for k, v in item.items()}
        r[str(idx) + "_dtypes"] = {k: str(getattr(v, "dtype", "str")) for k, v in item.items()}
    chunk = LeRobotDataset("local/" + name, root=root, delta_timestamps={"action": [i / ds.fps for i in range(4)]})
    item = chunk[3]
    r["chunk"] = {"action": item["action"].tolist(), "pad": item["action_is_pad"].tolist()}
    out[name] = r
print(json.dumps(out))
"""


def _frame_dict(ep, t):
    return {**{c: ep.frames[c][t] for c in ep.frames}, "state": ep.state[t]}


def test_lerobot_dataset_loads_ours(tmp_path, make_episodes, monkeypatch):
    eps = make_episodes(lengths=(5, 9, 7))
    clean = tmp_path / "clean"
    write_lerobot(clean, eps)
    # a recording that died: episode 2's files written but never committed, then a 4th episode left open
    crashed = tmp_path / "crashed"
    real = lr_writer._write_parquet

    def dying(table, path):
        if "episodes" in str(path) and table.num_rows == 3:
            raise KeyboardInterrupt("killed")
        real(table, path)

    monkeypatch.setattr(lr_writer, "_write_parquet", dying)
    w = LeRobotWriter(crashed)
    for ep in eps:
        w.start(ep.instruction, seed=ep.seed)
        for t in range(len(ep)):
            w.add_frame(_frame_dict(ep, t), ep.action[t], bool(ep.step_success[t]))
        try:
            w.end_episode()
        except KeyboardInterrupt:
            break
    assert (crashed / "data/chunk-000/file-002.parquet").exists()  # orphan data LeRobot will also glob
    assert len(read_lerobot(crashed)) == 2

    video = clean / "videos/observation.images.wrist/chunk-000/file-000.mp4"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([str(PYTHON), "-c", SCRIPT, str(clean), str(crashed), str(video)], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in res:
        pytest.skip(res["skip"])

    for name, n_eps in (("clean", 3), ("crashed", 2)):
        r = res[name]
        frames = sum(len(e) for e in eps[:n_eps])
        assert (r["len"], r["episodes"], r["fps"]) == (frames, n_eps, 20), name
        for idx in (0, frames - 1):
            item = r[str(idx)]
            ep_i = 0 if idx == 0 else n_eps - 1
            t = 0 if idx == 0 else len(eps[ep_i]) - 1
            ep = eps[ep_i]
            assert set(item) == {"observation.images.agentview", "observation.images.wrist", "observation.state",
                                 "action", "next.success", "timestamp", "frame_index", "episode_index", "index",
                                 "task_index", "task"}
            assert r[str(idx) + "_dtypes"]["observation.state"] == "torch.float32"
            np.testing.assert_array_equal(np.float32(item["observation.state"]), ep.state[t])
            np.testing.assert_array_equal(np.float32(item["action"]), ep.action[t])
            for cam in ("agentview", "wrist"):
                img = np.asarray(item[f"observation.images.{cam}"])  # float (3, H, W) in [0, 1]
                assert img.shape == (3, 32, 48)
                np.testing.assert_array_equal(np.round(img * 255).astype(np.uint8).transpose(1, 2, 0),
                                              ep.frames[cam][t])  # lossless video, decoded by torchcodec
            assert item["task"] == ep.instruction
            assert (item["episode_index"], item["frame_index"], item["index"]) == (ep_i, t, idx)
            assert item["next.success"] == bool(ep.step_success[t])
        np.testing.assert_array_equal(np.float32(r["chunk"]["action"]), eps[0].action[3:5][[0, 1, 1, 1]])
        assert r["chunk"]["pad"] == [False, False, True, True]
