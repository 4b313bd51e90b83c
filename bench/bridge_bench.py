"""The scripted expert through the ROS 2 bridge (twin process <-DDS-> policy node + safety) against the same episodes
run directly in the env: success rate, steps, and observation-to-command latency with two 128x128 cameras.

Run: ``vla-rl bench bridge [seeds=50]`` -> ``bench/results/bridge.json`` (needs the ros2 extra: ``make install-ros2``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from pydantic import Field

from robots.config import load_robot_config
from robots.ros2.twin import run_episode, twin_bridge
from vla_rl.config import Config
from vla_rl.envs import make_env
from vla_rl.splits import split_seeds

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("mujoco/Reach-v1", "mujoco/PickCube-v1")


def direct(task: str, seeds: list[int], image_size: int) -> dict:
    """The baseline: the expert acting in the env itself, no bridge, no speed caps."""
    env = make_env(task, image_size=image_size)
    out = []
    for s in seeds:
        env.reset(seed=s)
        done, info, steps = False, {}, 0
        while not done:
            _, _, term, trunc, info = env.step(env.expert_action())
            done, steps = term or trunc, steps + 1
        out.append({"seed": s, "success": bool(info["success"]), "steps": steps})
    env.close()
    return {"success_rate": float(np.mean([r["success"] for r in out])),
            "mean_steps": float(np.mean([r["steps"] for r in out]))}


def bridged(task: str, seeds: list[int], config: Path) -> dict:
    cfg = load_robot_config(config)
    with twin_bridge(task, config, cfg) as (node, client, _):
        t0 = time.monotonic()
        out = [run_episode(node, client, s, max_s=60) for s in seeds]
        wall = time.monotonic() - t0
    lat = np.array(node.latencies) * 1e3
    return {"success_rate": float(np.mean([r["success"] for r in out])),
            "mean_steps": float(np.mean([r["steps"] for r in out])),
            "failed_seeds": [r["seed"] for r in out if not r["success"]],
            "commands": len(node.sent), "steps_per_s": sum(r["steps"] for r in out) / wall,
            "latency_ms": {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
                           "max": float(lat.max())},
            "clamp_or_hold_log_entries": len(node.decisions)}


class BenchBridgeConfig(Config):
    """`vla-rl bench bridge`: the expert through the bridge vs directly in the env."""

    seeds: int = Field(50, ge=1, description="test seeds per task")
    robot: str = Field(str(ROOT / "configs" / "robots" / "twin.yaml"), description="robot config of the twin")
    out: str = Field(str(ROOT / "bench" / "results" / "bridge.json"), description="results file")


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import parse_args

    args = parse_args(BenchBridgeConfig, list(sys.argv[1:] if argv is None else argv), "bench bridge")
    seeds = split_seeds("test", args.seeds)
    cfg = load_robot_config(args.robot)
    results = {"command": f"vla-rl bench bridge seeds={args.seeds}",
               "machine": f"{platform.machine()}, {os.cpu_count()} cores", "cameras": cfg.cameras,
               "image_size": cfg.image_size, "watchdog_s": cfg.safety.watchdog_s, "tasks": {}}
    for task in TASKS:
        results["tasks"][task] = {"direct": direct(task, seeds, cfg.image_size),
                                  "bridge": bridged(task, seeds, Path(args.robot))}
        print(task, json.dumps(results["tasks"][task]), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
