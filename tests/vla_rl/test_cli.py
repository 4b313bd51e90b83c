"""Smoke-run every entry point with a tiny budget (CleanRL's idea), through the real console script."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vla_rl.cli import main


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("vla-rl")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vla_rl.cli"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_command():
    r = run("--help")
    assert r.returncode == 0
    for name in ("tasks", "sim", "eval", "collect", "replay", "sft", "train", "bench"):
        assert f"  {name}" in r.stdout


def test_command_help_lists_keys(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "env.num_envs: int = 8" in out and "split:" in out


def test_bad_config_is_refused_with_the_key(capsys):
    assert main(["eval", "--episods", "3"]) == 2
    err = capsys.readouterr().err
    assert "episods" in err and "episodes" in err
    assert main(["nope"]) == 2


def test_sim_writes_a_video(tmp_path):
    from vla_rl.utils.video import read_mp4

    out = tmp_path / "reach.mp4"
    r = run("sim", "--task", "mujoco/Reach-v1", "--image_size", "64", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "success" in r.stdout
    frames = read_mp4(out)
    assert frames.shape[1:] == (64, 128, 3) and len(frames) > 2
    assert frames.std() > 10


def test_eval_expert_reports_success(tmp_path):
    r = run("eval", "--policy", "expert", "--task", "mujoco/Reach-v1,mujoco/PickCube-v1", "--episodes", "4",
            "--out", str(tmp_path), "env.num_envs=2", "env.image_size=32", "videos=1")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "eval.json").read_text())
    assert set(res["tasks"]) == {"mujoco/Reach-v1", "mujoco/PickCube-v1"}
    for t in res["tasks"].values():
        assert t["episodes"] == 4 and t["success"] == 1.0 and t["lost"] == 0
    assert (tmp_path / "mujoco_Reach-v1.mp4").is_file()


def test_collect_then_replay_has_zero_deviation(tmp_path):
    data = tmp_path / "pick"
    r = run("collect", "--task", "mujoco/PickCube-v1", "--episodes", "2", "--image_size", "32", "--out", str(data))
    assert r.returncode == 0, r.stderr
    r = run("replay", str(data), "--episode", "1", "--video", str(tmp_path / "rep.mp4"))
    assert r.returncode == 0, r.stderr
    assert "max state deviation 0," in r.stdout and "max pixel deviation 0" in r.stdout
    assert (tmp_path / "rep.mp4").is_file()


def test_sft_smoke_then_eval_checkpoint(tmp_path):
    from vla_rl.data.recorder import collect

    collect("mujoco/Reach-v1", 3, out=tmp_path / "d", image_size=32, progress=False)
    pol = ("policy={vision: {image_size: 32, patch_size: 8, hidden_size: 32, num_heads: 2}, "
           "lm: {hidden_size: 32, num_heads: 2, num_layers: 1}, chunk_size: 2}")
    r = run("sft", f"data=[{tmp_path / 'd'}]", f"out={tmp_path / 'run'}", "steps=20", "batch_size=8",
            "eval_every=20", "eval_episodes=2", "env.num_envs=2", pol)
    assert r.returncode == 0, r.stderr
    ckpt = tmp_path / "run" / "best"
    assert (ckpt / "model.safetensors").is_file()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss/ce" in row for row in rows) and any("eval/success" in row for row in rows)
    assert np.isfinite([row["loss/ce"] for row in rows if "loss/ce" in row]).all()
    r = run("eval", "--policy", str(ckpt), "--task", "mujoco/Reach-v1", "--episodes", "2", "--out",
            str(tmp_path / "ev"), "env.num_envs=2", "videos=0")
    assert r.returncode == 0, r.stderr
    ev = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert ev["tasks"]["mujoco/Reach-v1"]["episodes"] == 2 and ev["point_decoding"] == "argmax"  # the checkpoint's
    r = run("eval", "--policy", str(ckpt), "--task", "mujoco/Reach-v1", "--episodes", "2", "--out",
            str(tmp_path / "ev_med"), "env.num_envs=2", "videos=0", "--point-decoding", "median")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "ev_med" / "eval.json").read_text())["point_decoding"] == "median"
    from vla_rl.evaluation import EvalConfig, evaluate

    def sampled(name: str, seed: int) -> dict:  # the stochastic policy, seeded: repeatable
        cfg = EvalConfig(policy=str(ckpt), task="mujoco/Reach-v1", episodes=4, temperature=1.6, seed=seed, videos=0,
                         out=str(tmp_path / name), env={"num_envs": 2})
        return evaluate(cfg)

    a, b = sampled("s1", 0), sampled("s2", 0)
    same = [{k: r["tasks"]["mujoco/Reach-v1"][k] for k in ("success", "mean_steps")} for r in (a, b)]
    assert a["temperature"] == 1.6 and same[0] == same[1]
    r = run("train", "tasks=[mujoco/Reach-v1]", f"init={ckpt}", f"out={tmp_path / 'rl'}", "iterations=1",
            "sampling.seeds_per_iter=2", "sampling.group_size=2", "eval.episodes=0", "env.num_envs=2",
            "optim.minibatch_size=8")
    assert r.returncode == 0, r.stderr
    assert "GRPO done: 1 iterations" in r.stdout and (tmp_path / "rl" / "last" / "model.safetensors").is_file()


def test_a_truncated_checkpoint_is_one_line_naming_the_file(tiny_vla, tmp_path):
    """As a new user meets it: a copy cut short, then `vla-rl eval --policy <folder>`."""
    ckpt = tmp_path / "ckpt"
    tiny_vla.save_pretrained(ckpt)
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    r = run("eval", "--policy", str(ckpt), "--task", "mujoco/Reach-v1", "--episodes", "1", "--out",
            str(tmp_path / "eval"), timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(weights) in lines[0] and "truncated or corrupt" in lines[0] and "bytes" in lines[0]
