"""A policy through the ROS 2 bridge (twin process <-DDS-> policy node + safety) against the same episodes run
directly in the env: success rate, steps, and observation-to-command latency.

Two modes:
- the scripted expert (default) on Reach and PickCube, two 128x128 cameras, against the expert acting in the env;
- a trained checkpoint (``checkpoint=<folder>``) on its tasks, the cameras at its image size, against
  ``vla-rl eval`` of the same checkpoint on the same test seeds: the bridge's success must lie in eval's 95% interval.

Run: ``vla-rl bench bridge [seeds=50]`` -> ``bench/results/bridge.json``;
``vla-rl bench bridge checkpoint=runs/quickstart/grpo/best`` -> ``bench/results/bridge_checkpoint.json``
(needs the ros2 extra: ``make install-ros2``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from pydantic import Field

from robots.config import RobotConfig, load_robot_config
from robots.ros2.node import CheckpointPolicy
from robots.ros2.twin import run_episode, twin_bridge
from vla_rl.config import Config
from vla_rl.envs import make_env
from vla_rl.splits import split_seeds
from vla_rl.utils.stats import wilson_interval

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("mujoco/Reach-v1", "mujoco/PickCube-v1")
LATENCY_EPISODES = 10  # checkpoint mode: episodes timed at the robot config's image size


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


def evaluated(checkpoint: str, task: str, episodes: int, out: Path) -> dict:
    """The baseline of a checkpoint: `vla-rl eval` itself (greedy, test split, vector envs), no bridge."""
    from vla_rl.evaluation import EvalConfig, evaluate

    res = evaluate(EvalConfig(policy=checkpoint, task=task, episodes=episodes, videos=0, out=str(out)))
    r = res["tasks"][task]
    return {"success_rate": r["success"], "ci95": r["ci95"], "mean_steps": r["mean_steps"], "lost": r["lost"]}


def bridged(task: str, seeds: list[int], config: Path, cfg: RobotConfig, source=None) -> dict:
    """``source`` (None: the twin's expert) acting through the bridge, one episode per seed."""
    with twin_bridge(task, config, cfg, source) as (node, client, _):
        t0 = time.monotonic()
        out = [run_episode(node, client, s, max_s=120) for s in seeds]
        wall = time.monotonic() - t0
    lat = np.array(node.latencies) * 1e3
    k = sum(r["success"] for r in out)
    return {"success_rate": k / len(out), "ci95": list(wilson_interval(k, len(out))),
            "mean_steps": float(np.mean([r["steps"] for r in out])),
            "failed_seeds": [r["seed"] for r in out if not r["success"]],
            "unfinished_seeds": [r["seed"] for r in out if not r["done"]],
            "commands": len(node.sent), "steps_per_s": sum(r["steps"] for r in out) / wall,
            "latency_ms": {"p50": float(np.percentile(lat, 50)), "p90": float(np.percentile(lat, 90)),
                           "p99": float(np.percentile(lat, 99)), "max": float(lat.max())},
            "clamp_or_hold_log_entries": len(node.decisions), "logged": logged(node.decisions)}


def logged(decisions: list[str]) -> dict[str, int]:
    """The node's hold / clamp log by cause: ``hold <reason>`` (e.g. ``hold watchdog``) and ``clamp <rule>``."""
    counts: Counter[str] = Counter()
    for text in decisions:
        kind, _, rest = text.partition(": ")
        if kind.endswith("HOLD"):
            counts.update(f"hold {r.split(':')[0]}" for r in rest.split("; "))
        else:
            counts.update(f"clamp {c.split(' ')[0]}" for c in rest.split(", "))
    return dict(counts)


class BenchBridgeConfig(Config):
    """`vla-rl bench bridge`: a policy through the bridge vs the same policy directly in the env."""

    seeds: int = Field(50, ge=1, description="test seeds per task")
    checkpoint: str | None = Field(None, description="a trained checkpoint folder (None: the scripted expert)")
    tasks: str | None = Field(None, description="comma-separated task ids (None: Reach and PickCube for the "
                              "expert, the checkpoint's first two tasks otherwise)")
    robot: str = Field(str(ROOT / "configs" / "robots" / "twin.yaml"), description="robot config of the twin")
    out: str | None = Field(None, description="results file (None: bench/results/bridge.json, or "
                            "bridge_checkpoint.json with a checkpoint)")


def checkpoint_tasks(checkpoint: str) -> list[str]:
    """The tasks a `vla-rl train` run trained on, from the run's results.json next to the checkpoint."""
    for results in (Path(checkpoint).parent.parent / "results.json", Path(checkpoint).parent / "results.json"):
        if results.is_file():
            return json.loads(results.read_text())["tasks"][:2]
    raise ValueError(f"no results.json near {checkpoint}: name the tasks (tasks=<id>,<id>)")


def run_checkpoint(args: BenchBridgeConfig, seeds: list[int], tasks: list[str]) -> dict:
    """Each task: `vla-rl eval` of the checkpoint, then the checkpoint through the bridge on the same seeds."""
    source = CheckpointPolicy(args.checkpoint)
    vla = source.policy.policy.config
    cfg = load_robot_config(args.robot).with_image_size(vla.render_size)
    if list(vla.cameras) != cfg.cameras:
        raise ValueError(f"the checkpoint reads cameras {list(vla.cameras)}, the robot config has {cfg.cameras}")
    out = {"command": f"vla-rl bench bridge checkpoint={args.checkpoint} seeds={args.seeds}",
           "checkpoint": args.checkpoint, "image_size": cfg.image_size, "cameras": cfg.cameras, "tasks": {}}
    for task in tasks:
        ev = evaluated(args.checkpoint, task, len(seeds), ROOT / "runs" / "bench_bridge_eval")
        br = bridged(task, seeds, Path(args.robot), cfg, source)
        br["within_eval_ci95"] = ev["ci95"][0] <= br["success_rate"] <= ev["ci95"][1]
        out["tasks"][task] = {"eval": ev, "bridge": br}
        print(task, json.dumps(out["tasks"][task]), flush=True)
    # Latency as deployed on the robot config's own cameras (the node resizes them to the policy's input).
    full = load_robot_config(args.robot)
    lat = bridged(tasks[0], seeds[:LATENCY_EPISODES], Path(args.robot), full, source)
    out["latency_at_robot_cameras"] = {"task": tasks[0], "episodes": LATENCY_EPISODES, "cameras": full.cameras,
                                       "image_size": full.image_size, "latency_ms": lat["latency_ms"],
                                       "commands": lat["commands"]}
    print("latency", json.dumps(out["latency_at_robot_cameras"]), flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import parse_args

    args = parse_args(BenchBridgeConfig, list(sys.argv[1:] if argv is None else argv), "bench bridge")
    seeds = split_seeds("test", args.seeds)
    machine = {"machine": f"{platform.machine()}, {os.cpu_count()} cores"}
    if args.checkpoint is not None:
        tasks = args.tasks.split(",") if args.tasks else checkpoint_tasks(args.checkpoint)
        results = machine | run_checkpoint(args, seeds, tasks)
        out = args.out or str(ROOT / "bench" / "results" / "bridge_checkpoint.json")
    else:
        cfg = load_robot_config(args.robot)
        results = machine | {"command": f"vla-rl bench bridge seeds={args.seeds}", "cameras": cfg.cameras,
                             "image_size": cfg.image_size, "watchdog_s": cfg.safety.watchdog_s, "tasks": {}}
        for task in args.tasks.split(",") if args.tasks else TASKS:
            results["tasks"][task] = {"direct": direct(task, seeds, cfg.image_size),
                                      "bridge": bridged(task, seeds, Path(args.robot), cfg)}
            print(task, json.dumps(results["tasks"][task]), flush=True)
        out = args.out or str(ROOT / "bench" / "results" / "bridge.json")
    Path(out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
