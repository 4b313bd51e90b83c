"""Success rate of the motion-planning expert on a ManiSkill task (its registered spec: step limit, kwargs), beside
the planning env's own success on the same seeds, written to a JSON file.

    python -m sims.maniskill.measure_expert PickCube-v1 50 bench/results/maniskill_pickcube_expert.json
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

from vla_rl.envs import env_spec, make_env
from vla_rl.splits import split_seeds


def measure(task: str, episodes: int, image_size: int = 64) -> dict:
    """Run the expert on the first ``episodes`` train seeds of ``maniskill/<task>``; returns the per-seed outcomes
    (ours, and whether ManiSkill's solution solved its own planning env) and the rates."""
    env = make_env(f"maniskill/{task}", image_size=image_size, cameras=("agentview",))
    seeds = split_seeds("train", episodes)
    rows, start = [], time.perf_counter()
    try:
        for seed in seeds:
            env.reset(seed=seed)
            done, info, steps = False, {"success": False}, 0
            while not done:
                _, _, term, trunc, info = env.step(env.expert_action())
                steps += 1
                done = term or trunc
            rows.append({"seed": int(seed), "success": bool(info["success"]), "steps": steps,
                         **_plan_facts(env._expert)})
            print(rows[-1], flush=True)
        label = ("ManiSkill motion-planning solution (mplib 0.1.1), tracked with pd_ee_delta_pose actions"
                 if hasattr(env._expert, "plan_solved") else type(env._expert).__name__)
    finally:
        env.close()
    n_ok, n_plan = sum(r["success"] for r in rows), sum(r.get("plan_solved", False) for r in rows)
    return {"task": f"maniskill/{task}", "expert": label, "episodes": len(rows), "successes": n_ok,
            "success_rate": n_ok / len(rows),
            "planning_env_successes": n_plan, "max_episode_steps": env_spec(f"maniskill/{task}").max_episode_steps,
            "wall_s": round(time.perf_counter() - start, 1),
            "machine": f"{platform.processor() or platform.machine()}, CPU physics, lavapipe", "per_seed": rows}


def _plan_facts(expert: object) -> dict:
    """The motion planner's own figures for the episode (none for a scripted expert)."""
    if not hasattr(expert, "plan_solved"):
        return {}
    return {"planned": bool(expert.planned_ok), "plan_solved": bool(expert.plan_solved),
            "plan_steps": len(expert.plan)}


if __name__ == "__main__":
    task, n, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    result = measure(task, n)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{task}: {result['successes']}/{result['episodes']} ({result['success_rate']:.0%}) -> {out}")
