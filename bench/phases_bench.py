"""`vla-rl bench phases`: how far policies get through the long-horizon task PlaceThenOpenDrawer's two phases.

Each policy (a checkpoint folder, or ``expert``) runs greedily, or sampled at ``temperature`` as GRPO's rollouts are,
in one env on the first ``episodes`` seeds of ``split``. Per episode it records the first step at which the cube
was lifted (its centre above ``LIFT_Z``), placed (in the bin, released) and the drawer opened (at least
``DRAWER_OPEN``), and success. A policy at 0% success says nothing about where it fails; this does (issue 34:
whether the place phase, the drawer phase or their chaining is what the one demo does not teach). The cabinet's
side (left or right of the robot) is a discrete choice that a range fraction only makes rarer (left with
probability spread / 2, `sims.mujoco.task.flip`), so each episode also records whether its cabinet stands on the
same side as the recipes' demo's (train seed 0).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np
from pydantic import Field

from bench.results_io import write_json
from vla_rl.config import Config

LIFT_Z = 0.05  # m: the cube's centre this high is off the table (it rests at 0.02)


class BenchPhasesConfig(Config):
    """`vla-rl bench phases`: the long task's phases reached by each policy."""

    policies: list[str] = Field(["expert"], min_length=1, description="checkpoint folders, or 'expert'")
    task: str = Field("mujoco/PlaceThenOpenDrawer-v1@spread=0.1", description="a PlaceThenOpenDrawer id or variant")
    split: str = Field("train", description="seed split (train: the curriculum's first rung is what GRPO samples)")
    episodes: int = Field(10, ge=1, description="episodes per policy: the split's first seeds")
    image_size: int = Field(64, description="camera image side, pixels (the checkpoint's)")
    temperature: float | None = Field(None, gt=0, description="sample the action tokens at this temperature (GRPO's "
                                      "rollouts: 1.0); None: greedy")
    seed: int = Field(0, description="seed of the sampled tokens")
    results: str = Field("bench/results/long_phases.json", description="the table")


def cabinet_side(env: Any) -> int:
    """+1 when the cabinet stands left of the robot (y > 0), -1 right."""
    from tasks.robot._scene import mocap_pose

    return 1 if mocap_pose(env.sim, "cabinet")[0][1] > 0 else -1


def run_episode(env: Any, policy: Any, seed: int) -> dict[str, Any]:
    """One episode: the first step (1-based) of lift / place / open, or None; success; where the hand ended (m)."""
    from tasks.robot._scene import DRAWER_OPEN, drawer_opening, finger_contacts, in_bin

    obs, _ = env.reset(seed=seed)
    first: dict[str, int | None] = {"lifted": None, "placed": None, "opened": None}
    t, success, done = 0, False, False
    while not done:
        chunk = env.expert_action()[None] if policy is None else policy(obs, env.instruction)
        for action in chunk:
            obs, _, terminated, truncated, info = env.step(action)
            t += 1
            reached = {"lifted": env.sim.body_pos("cube")[2] > LIFT_Z,
                       "placed": in_bin(env.sim, "cube") and finger_contacts(env.sim, "cube") == 0,
                       "opened": drawer_opening(env.sim) >= DRAWER_OPEN}
            first |= {k: t for k, v in reached.items() if v and first[k] is None}
            success = bool(info.get("success", False))
            done = terminated or truncated or success
            if done:
                break
    return {"seed": seed, "steps": t, "success": success, **{f"{k}_step": v for k, v in first.items()},
            "tcp_end": [round(float(x), 4) for x in env.sim.tcp_pos()]}


def run_policy(cfg: BenchPhasesConfig, name: str, seeds: list[int]) -> dict[str, Any]:
    """One policy's episodes and the share of them reaching each phase (overall and on the demo's side)."""
    from vla_rl.envs import make_env
    from vla_rl.evaluation import VLAChunkPolicy
    from vla_rl.splits import split_seeds

    env = make_env(cfg.task, image_size=cfg.image_size)
    env.reset(seed=split_seeds("train", 1)[0])  # the recipes' one demo: train seed 0 (`demo_spread`)
    demo_side = cabinet_side(env)
    sampled = {} if cfg.temperature is None else {"greedy": False, "temperature": cfg.temperature, "seed": cfg.seed}
    policy = None if name == "expert" else VLAChunkPolicy.from_pretrained(name, **sampled)
    t0 = time.time()
    rows = []
    for seed in seeds:
        row = run_episode(env, policy, seed)
        rows.append(row | {"demo_side": cabinet_side(env) == demo_side})
    env.close()

    def shares(sel: list[dict[str, Any]]) -> dict[str, Any]:
        if not sel:
            return {"episodes": 0}
        reached = {k: float(np.mean([r[f"{k}_step"] is not None for r in sel])) for k in ("lifted", "placed", "opened")}
        return {"episodes": len(sel), "success": float(np.mean([r["success"] for r in sel])), **reached}

    return {"policy": name, "all": shares(rows), "demo_side": shares([r for r in rows if r["demo_side"]]),
            "episodes": rows, "wall_s": round(time.time() - t0, 1)}


def run_phases_bench(cfg: BenchPhasesConfig) -> dict[str, Any]:
    """Every policy on the same seeds; the table written after each."""
    from vla_rl.splits import split_seeds

    seeds = split_seeds(cfg.split, cfg.episodes)
    decoding = "greedy" if cfg.temperature is None else f"sampled at T {cfg.temperature}"
    doc: dict[str, Any] = {"what": f"phases of {cfg.task} reached by each policy, {decoding}, {cfg.split} seeds "
                                   f"0..{cfg.episodes - 1} of the split",
                           "task": cfg.task, "temperature": cfg.temperature, "lift_z": LIFT_Z, "runs": []}
    for name in cfg.policies:
        doc["runs"].append(run_policy(cfg, name, seeds))
        write_json(cfg.results, doc)
    return doc


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import parse_args

    cfg = parse_args(BenchPhasesConfig, list(sys.argv[1:] if argv is None else argv), "bench phases")
    doc = run_phases_bench(cfg)
    print(json.dumps([{"policy": r["policy"], "all": r["all"], "demo_side": r["demo_side"]} for r in doc["runs"]],
                     indent=2))


if __name__ == "__main__":
    main()
