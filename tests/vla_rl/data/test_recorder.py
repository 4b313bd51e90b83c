"""collect(): expert demos and policy rollouts into LeRobot / zarr; a SIGKILLed run leaves a loadable dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from vla_rl.data.lerobot import PROGRESS_PATH, read_lerobot
from vla_rl.data.recorder import collect
from vla_rl.data.zarr_buffer import read_zarr
from vla_rl.envs import make_env

REPO = Path(__file__).resolve().parents[3]


def test_expert_demos_replay_exactly(tmp_path):
    out = tmp_path / "reach"
    s = collect("mujoco/Reach-v1", 2, out=out, image_size=32, progress=False)
    assert s["only_success"] is True and s["note"] == "only successful episodes kept"
    assert s["attempted"] == 2 and s["kept"] == s["successes"] == 2 and s["seeds"] == [0, 1]
    data = read_lerobot(out)
    assert len(data) == 2 and data.dropped == 0 and data.num_frames == s["frames"]
    assert data.info["vla_rl"]["env_task"] == "mujoco/Reach-v1"
    ep = data[1]
    assert ep.seed == 1 and ep.success and ep.step_success[-1] and not ep.step_success[:-1].any()
    # frame t is the observation *before* action t: replaying the actions from the seed reproduces it all
    env = make_env("mujoco/Reach-v1", image_size=32)
    try:
        obs, _ = env.reset(seed=ep.seed)
        assert env.instruction == ep.instruction
        for t in range(len(ep)):
            np.testing.assert_array_equal(obs["state"], ep.state[t])
            np.testing.assert_array_equal(obs["wrist"], ep.frames["wrist"][t])  # lossless video
            obs, _, term, trunc, info = env.step(ep.action[t])
            assert info["success"] == ep.step_success[t]
        assert term
    finally:
        env.close()


def test_noisy_expert_records_its_own_actions_and_replays_exactly(tmp_path):
    from vla_rl.data.replay import replay_episode

    clean = collect("mujoco/Reach-v1", 2, out=tmp_path / "clean", image_size=32, progress=False)
    noisy = collect("mujoco/Reach-v1", 2, out=tmp_path / "noisy", image_size=32, progress=False, noise=0.5)
    data = read_lerobot(tmp_path / "noisy")
    assert data.info["vla_rl"]["expert_noise"] == 0.5
    # perturbed states, so other frames and corrections: the demos differ from the clean expert's
    first_clean = read_lerobot(tmp_path / "clean")[0].state
    assert noisy["frames"] != clean["frames"] or not np.array_equal(data[0].state, first_clean)
    for ep in range(2):
        r = replay_episode(tmp_path / "noisy", ep)
        assert r["max_state_deviation"] == 0 and r["max_pixel_deviation"] == 0 and r["replayed_success"]
    # the recorded actions are the expert's, not what was executed: replaying them without the noise drifts
    env = make_env("mujoco/Reach-v1", image_size=32)
    try:
        ep = data[0]
        obs, _ = env.reset(seed=ep.seed)
        drift = 0.0
        for t in range(len(ep)):
            drift = max(drift, float(np.abs(obs["state"] - ep.state[t]).max()))
            obs, *_ = env.step(ep.action[t])
        assert drift > 1e-3
    finally:
        env.close()
    with pytest.raises(ValueError, match="expert only"):
        collect("mujoco/Reach-v1", 1, policy=lambda o, i: np.zeros(7), out=tmp_path / "p", noise=0.1, progress=False)


def test_policy_rollouts_to_zarr_keep_failures(tmp_path):
    calls = []

    def zero_policy(obs, instruction):
        calls.append(instruction)
        assert obs["agentview"].shape == (32, 32, 3) and obs["state"].shape == (8,)
        return np.zeros((3, 7), dtype=np.float32)

    s = collect("mujoco/Reach-v1", 2, policy=zero_policy, out=tmp_path / "z", fmt="zarr", image_size=32,
                progress=False, max_steps=7, start=5)
    assert s["only_success"] is False and s["kept"] == 2 and s["successes"] == 0 and s["seeds"] == [5, 6]
    assert s["policy"] == "zero_policy" and len(calls) == 2 * 3  # ceil(7 / 3) chunks per episode
    data = read_zarr(tmp_path / "z")
    assert data.episode_ends.tolist() == [7, 14]
    assert [e.seed for e in data] == [5, 6] and not any(e.success for e in data)
    np.testing.assert_array_equal(data[0].action, np.zeros((7, 7), np.float32))


def test_only_success_discards_failures(tmp_path):
    s = collect("mujoco/Reach-v1", 2, policy=lambda o, i: np.zeros(7), out=tmp_path / "d", image_size=32,
                progress=False, max_steps=3, only_success=True)
    assert s["kept"] == 0 and s["discarded"] == 2
    data = read_lerobot(tmp_path / "d")
    assert len(data) == 0 and data.discarded == 2 and data.dropped == 0


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown format"):
        collect("mujoco/Reach-v1", 1, out=tmp_path / "x", fmt="hdf5", progress=False)
    with pytest.raises(ValueError, match="unknown policy"):
        collect("mujoco/Reach-v1", 1, policy="random", out=tmp_path / "x", progress=False)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from vla_rl.data.recorder import collect

    def slow_policy(obs, instruction):
        time.sleep(0.03)  # an episode of 10 steps takes ~0.4 s: the parent kills in the middle of one
        return np.zeros((1, 7), dtype=np.float32)

    collect("mujoco/Reach-v1", 50, policy=slow_policy, out=sys.argv[1], fmt=sys.argv[2], image_size=32,
            progress=False, max_steps=10)
""")


def run_and_kill(out: Path, fmt: str, progress_of) -> dict:
    """Start collect() in a subprocess, SIGKILL it while its 3rd+ episode is open; return the progress seen."""
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out), fmt], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "collect exited before it could be killed"
            p = progress_of(out)
            if p and p["saved"] >= 2 and p["open"]:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                return p
            time.sleep(0.005)
        raise AssertionError("collect made no progress in 60 s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _lerobot_progress(out: Path) -> dict | None:
    try:
        return json.loads((out / PROGRESS_PATH).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _zarr_progress(out: Path) -> dict | None:
    try:
        return json.loads((out / ".zattrs").read_text())["vla_rl"]["progress"]
    except (OSError, json.JSONDecodeError, KeyError):
        return None


def test_sigkill_mid_episode_leaves_loadable_lerobot(tmp_path):
    out = tmp_path / "killed"
    seen = run_and_kill(out, "lerobot", _lerobot_progress)
    data = read_lerobot(out)
    assert len(data) == seen["saved"] >= 2
    assert data.dropped == 1  # the episode that was open at the kill
    assert all(len(e) == 10 and e.frames["agentview"].shape == (10, 32, 32, 3) for e in data)
    assert [e.seed for e in data] == list(range(len(data)))


def test_sigkill_mid_episode_leaves_loadable_zarr(tmp_path):
    out = tmp_path / "killed.zarr"
    seen = run_and_kill(out, "zarr", _zarr_progress)
    data = read_zarr(out)
    assert len(data) == seen["saved"] >= 2 and data.dropped == 1 and data.uncommitted_rows == 0
    assert data.episode_ends.tolist() == [10 * (i + 1) for i in range(len(data))]
