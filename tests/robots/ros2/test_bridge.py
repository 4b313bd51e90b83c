"""The twin and the policy node over real DDS between two processes (issue 30): the expert succeeds through the
bridge, a random-weight checkpoint's commands respect the safety limits. The faults (a killed camera publisher, the
e-stop from another process, malformed messages) are in test_faults.py.

The twin runs as a child process (``vla-rl twin``, as ``python -m vla_rl.cli twin``, PYTHONPATH = this tree) on a
random domain id; the node runs here. Timeouts are generous (a loaded 2-core CI machine); nothing assumes speed.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cyclonedds")

from pydantic import ValidationError  # noqa: E402

from robots.config import RobotConfig, load_robot_config  # noqa: E402
from robots.ros2.convert import action_to_command, command_to_action, state_from_pose  # noqa: E402
from robots.ros2.node import CheckpointPolicy  # noqa: E402
from robots.ros2.transport import free_domain  # noqa: E402
from robots.ros2.twin import run_episode, twin_bridge  # noqa: E402
from vla_rl.splits import split_seeds  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "robots" / "twin.yaml"
SMALL = 32  # px: the tests' images


def small_config(**update) -> RobotConfig:
    cfg = load_robot_config(CONFIG).with_image_size(SMALL)
    return cfg.model_copy(update=update) if update else cfg


def bridge(task: str, cfg: RobotConfig, source=None):
    """A twin child process for ``task`` and, here, a node and a twin client on one fresh domain."""
    return twin_bridge(task, CONFIG, cfg, source=source, max_s=240)


def wait_matched(pub, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while pub.matched() == 0:
        assert time.monotonic() < deadline, f"nobody subscribes to {pub.topic}"
        time.sleep(0.02)


# ---- units ---------------------------------------------------------------------------------------------------


def test_twist_action_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = rng.uniform(-1, 1, 7).astype(np.float32)
        lin, ang, opening = action_to_command(a, 0.05, 0.02, 0.1, 0.04)
        assert np.all(np.abs(lin) <= 0.4 + 1e-9) and np.all(np.abs(ang) <= 2.0 + 1e-9) and 0 <= opening <= 0.04
        np.testing.assert_allclose(command_to_action(lin, ang, opening, 0.05, 0.02, 0.1, 0.04), a, atol=1e-6)
    lin, ang, opening = action_to_command(np.array([1, 0, 0, 0, 0, -1, 1.0]), 0.05, 0.02, 0.1, 0.04)
    assert lin[0] == pytest.approx(0.4) and ang[2] == pytest.approx(-2.0) and opening == 0.0


def test_state_from_pose_equals_the_env_proprio():
    import mujoco

    from vla_rl.envs import make_env

    env = make_env("mujoco/PickCube-v1", image_size=SMALL)
    obs, _ = env.reset(seed=split_seeds("test", 1)[0])
    for _ in range(5):
        obs, *_ = env.step(env.expert_action())
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, env.sim.tcp_rotmat().ravel())
    state = state_from_pose(env.sim.tcp_pos(), q[[1, 2, 3, 0]], env.sim.gripper_qpos())
    np.testing.assert_allclose(state, obs["state"], atol=1e-5)
    env.close()


def test_config_loads_and_refuses_a_misspelt_key(tmp_path):
    cfg = load_robot_config(CONFIG)
    assert cfg.command_mode == "twist" and cfg.safety.watchdog_s == 0.5 and cfg.dt == 0.05
    text = CONFIG.read_text()
    for good, bad in [("control_hz:", "control_hertz:"), ("watchdog_s:", "watchdog:")]:
        (tmp_path / "bad.yaml").write_text(text.replace(good, bad))
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            load_robot_config(tmp_path / "bad.yaml")
    with pytest.raises(ValidationError, match="idle_republish_s"):
        cfg.model_validate({**cfg.model_dump(), "idle_republish_s": 1.0})


# ---- over DDS ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["mujoco/Reach-v1", "mujoco/PickCube-v1"])
def test_expert_succeeds_through_the_bridge(task):
    cfg = small_config()
    with bridge(task, cfg) as (node, client, _):
        results = [run_episode(node, client, seed, max_s=60) for seed in split_seeds("test", 3)]
    assert all(r["success"] for r in results), results
    assert node.latencies and all(lat >= 0 for lat in node.latencies)


def test_checkpoint_commands_respect_the_safety_limits(tiny_vla, tmp_path):
    tiny_vla.save_pretrained(tmp_path / "ckpt")
    cfg = small_config()
    source = CheckpointPolicy(str(tmp_path / "ckpt"))
    with bridge("mujoco/Reach-v1", cfg, source) as (node, client, _):
        result = run_episode(node, client, split_seeds("test", 1)[0], max_s=90)
    assert result["steps"] >= 5 and node.sent, result  # the twin stepped on the node's commands
    s = cfg.safety
    for _, lin, ang, opening in node.sent:
        assert np.linalg.norm(lin) <= s.max_linear_speed + 1e-9
        assert np.linalg.norm(ang) <= s.max_angular_speed + 1e-9
        assert 0.0 <= opening <= cfg.finger_open


class Recording:
    """An action source that keeps what it saw and what it answered: (obs, chunk) per call."""

    def __init__(self, source):
        self.source, self.calls = source, []

    def reset(self) -> None:
        self.source.reset()

    def __call__(self, obs, instruction, stamp):
        chunk = self.source(obs, instruction, stamp)
        self.calls.append(({k: v.copy() for k, v in obs.items()}, np.array(chunk)))
        return chunk


def test_the_bridge_is_transparent(tiny_vla, tmp_path):
    """What a checkpoint sees through the bridge is what the env shows, and what it answers is what the twin
    executes: its commands carry its chunks' actions exactly (the twin config's caps never bind on an in-range
    action), and replaying those actions in the env from the same seed reproduces, at every policy call, the
    images byte for byte and the state (rebuilt from the pose and the fingers' joint states) to 1e-5."""
    tiny_vla.save_pretrained(tmp_path / "ckpt")
    cfg = small_config()
    source = Recording(CheckpointPolicy(str(tmp_path / "ckpt")))
    seed = split_seeds("test", 1)[0]
    with bridge("mujoco/Reach-v1", cfg, source) as (node, client, _):
        result = run_episode(node, client, seed, max_s=90)
    c = cfg
    sent = np.array([command_to_action(lin, ang, opening, c.dt, c.pos_scale, c.rot_scale, c.finger_open)
                     for _, lin, ang, opening in node.sent])
    asked = np.concatenate([chunk for _, chunk in source.calls])
    # the node may act once more on the final observation (it cannot know the episode ended); the twin ignores it
    assert result["steps"] <= len(sent) <= result["steps"] + 1 and len(sent) <= len(asked), (result, len(sent))
    np.testing.assert_allclose(sent, np.clip(asked[:len(sent)], -1, 1), atol=1e-6)

    from vla_rl.envs import make_env

    env = make_env("mujoco/Reach-v1", image_size=SMALL, cameras=tuple(cfg.cameras))
    obs, _ = env.reset(seed=seed)
    t = 0
    for seen, chunk in source.calls:
        for cam in cfg.cameras:
            np.testing.assert_array_equal(seen[cam][0], obs[cam])
        np.testing.assert_allclose(seen["state"][0], obs["state"], atol=1e-5)
        for _ in range(min(len(chunk), result["steps"] - t)):
            obs, _, term, trunc, info = env.step(sent[t])
            t += 1
    env.close()
    assert t == result["steps"] and bool(info["success"]) == result["success"] and (term or trunc)


def test_the_twin_and_deploy_commands_run_a_checkpoint_over_dds(tiny_vla, tmp_path):
    """`vla-rl twin` and `vla-rl deploy <checkpoint>` as a user runs them, two processes on one domain: the node
    commands the twin until its episode ends (a random-weight policy: truncated at the task's step limit)."""
    tiny_vla.save_pretrained(tmp_path / "ckpt")
    domain = free_domain()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    cli = [sys.executable, "-m", "vla_rl.cli"]
    twin = subprocess.Popen([*cli, "twin", "--task", "mujoco/Reach-v1", "--seed", str(split_seeds("test", 1)[0]),
                             "--image-size", str(SMALL), "--domain", str(domain), "--max-s", "120"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deploy = subprocess.run([*cli, "deploy", str(tmp_path / "ckpt"), "--image-size", str(SMALL), "--domain",
                                 str(domain), "--max-s", "15"], env=env, cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
        assert deploy.returncode == 0, deploy.stderr
        assert "observation-to-command latency p50" in deploy.stdout
    finally:
        twin.kill()
        out, _ = twin.communicate(timeout=30)
    assert "episode of seed 2000000 ended after 60 steps: truncated" in out, out[-2000:]
