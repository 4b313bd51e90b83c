"""Success rate of the motion-planning expert on a ManiSkill task, written to a JSON file.

    python -m sims.maniskill.measure_expert PickCube-v1 50 bench/results/maniskill_pickcube_expert.json
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

from sims.maniskill.env import ManiSkillEnv
from vla_rl.splits import split_seeds


def measure(task: str, episodes: int, max_episode_steps: int = 100, image_size: int = 64) -> dict:
    """Run the expert on the first ``episodes`` train seeds; returns the per-seed outcomes and the rate."""
    env = ManiSkillEnv(task, max_episode_steps=max_episode_steps, image_size=image_size, cameras=("agentview",))
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
                         "planned": bool(env._expert.planned_ok)})
            print(rows[-1], flush=True)
    finally:
        env.close()
    n_ok = sum(r["success"] for r in rows)
    return {"task": f"maniskill/{task}", "expert": "ManiSkill motion-planning solution (mplib 0.1.1), tracked with "
            "pd_ee_delta_pose actions", "episodes": len(rows), "successes": n_ok, "success_rate": n_ok / len(rows),
            "max_episode_steps": max_episode_steps, "wall_s": round(time.perf_counter() - start, 1),
            "machine": f"{platform.processor() or platform.machine()}, CPU physics, lavapipe", "per_seed": rows}


if __name__ == "__main__":
    task, n, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    result = measure(task, n)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{task}: {result['successes']}/{result['episodes']} ({result['success_rate']:.0%}) -> {out}")
