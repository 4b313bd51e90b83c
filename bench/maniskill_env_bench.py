"""The ManiSkill row of `vla-rl bench env`: our vector env against ManiSkill's own CPU vectorisation.

    vla-rl bench env --backend maniskill [maniskill_envs=16 image_size=64 seconds=6 rounds=2]

ManiSkill 3 refuses ``num_envs > 1`` on its CPU sim and points at Gymnasium's ``AsyncVectorEnv``; its own CPU
benchmark (``mani_skill/examples/benchmarking/gpu_sim.py --cpu-sim``) builds one process per env, each a task
wrapped in ``CPUGymWrapper``, with the default multiprocessing context. That is the baseline here, with the same
task, the same two cameras (``base_camera`` and our wrist camera on ``panda_hand``) at the same size, the same
``pd_ee_delta_pose`` controller and the same 100-step limit (``TimeLimit``; Gymnasium's next-step auto-reset).
ManiSkill renders every sensor at every ``step`` of an RGB env, so the like-for-like figure is ``step`` mode
(one control step per call, every env renders both cameras after it); ours also runs ``chunk`` mode (8 control
steps per call, one render at the end), the way our rollouts step, with the baseline's per-step figure as its
reference, as ManiSkill has no way to skip a step's render.

Env steps/s are control steps summed over the envs per wall second, random actions, resets included; each figure
is the best of ``rounds`` interleaved samples of ``seconds``. The process rule: SAPIEN's Vulkan must never follow
MuJoCo's EGL in a process; nothing of MuJoCo runs here (the only SAPIEN env in this process is the one Gymnasium's
``AsyncVectorEnv`` builds to read the spaces). Results go under the ``maniskill`` key of
``bench/results/env.json``; every backend's bench keeps the other backends' keys when it writes the file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from bench.results_io import merge_result
from vla_rl.config import Config

KEY = "maniskill"


def native_env(task: str, image_size: int, max_episode_steps: int) -> Any:
    """ManiSkill's own single CPU env of ``task`` for ``AsyncVectorEnv``: RGB observations of ``base_camera`` and
    the wrist camera at ``image_size``, ``pd_ee_delta_pose``, ``TimeLimit``, ``CPUGymWrapper`` (numpy, unbatched).
    Module-level so that ``spawn`` can pickle a partial of it."""
    import gymnasium as gym

    from sims.maniskill.env import CONTROL_MODE, task_class

    cls = task_class(task, wrist=True)  # sets up Vulkan before sapien is imported
    from mani_skill.utils.wrappers.gymnasium import CPUGymWrapper

    env = cls(num_envs=1, obs_mode="rgb", control_mode=CONTROL_MODE, sim_backend="cpu", render_mode=None,
              robot_uids="panda", sensor_configs={"width": image_size, "height": image_size})
    return CPUGymWrapper(gym.wrappers.TimeLimit(env, max_episode_steps))


class _ManiSkillAsync:
    """``gymnasium.vector.AsyncVectorEnv`` over `native_env`: one process per env, every step rendered."""

    def __init__(self, task: str, n: int, image_size: int, max_episode_steps: int) -> None:
        from functools import partial

        import gymnasium as gym

        self.env = gym.vector.AsyncVectorEnv([partial(native_env, task, image_size, max_episode_steps)] * n,
                                             shared_memory=True, context="spawn")
        self.n = n
        self.resetting = np.zeros(n, bool)  # envs whose next step is Gymnasium's auto-reset (no physics)

    def reset(self) -> None:
        self.env.reset(seed=0)
        self.resetting[:] = False

    def advance(self, mode: str, rng: np.random.Generator) -> int:
        steps = int((~self.resetting).sum())
        _, _, term, trunc, _ = self.env.step(rng.uniform(-1, 1, (self.n, 7)).astype(np.float32))
        self.resetting = np.asarray(term) | np.asarray(trunc)
        return steps

    def pids(self) -> list[int]:
        return [p.pid for p in self.env.processes]

    def close(self) -> None:
        self.env.close()


def run_maniskill_env_bench(task_id: str = "maniskill/PickCube-v1", n: int = 16, image_size: int = 64,
                            seconds: float = 6.0, rounds: int = 2, quiet_budget_s: float = 10.0,
                            out: str | Path | None = "bench/results/env.json") -> dict[str, Any]:
    """Ours (`SubprocVectorEnv`, step and chunk modes) vs ManiSkill's ``AsyncVectorEnv`` (step mode) at ``n``
    envs; the row is written under ``maniskill`` in ``out`` (other keys kept) and returned."""
    from bench.env_bench import _best, _log, _measure, _Ours, _Quiet
    from vla_rl.envs import env_spec

    task = task_id.split("/", 1)[1]
    max_steps = env_spec(task_id).max_episode_steps
    t0, load0 = time.perf_counter(), os.getloadavg()
    quiet = _Quiet(quiet_budget_s)
    built = time.perf_counter()
    ours = _Ours(task_id, n, image_size)
    ours.reset()
    ours_start_s = time.perf_counter() - built
    built = time.perf_counter()
    theirs = _ManiSkillAsync(task, n, image_size, max_steps)
    theirs.reset()
    theirs_start_s = time.perf_counter() - built
    samples: dict[str, list[dict[str, float]]] = {"ours_step": [], "ours_chunk": [], "maniskill_async_step": []}
    try:
        for r in range(rounds):
            samples["ours_step"].append(_measure(ours, "step", seconds, seed=r, quiet=quiet))
            samples["maniskill_async_step"].append(_measure(theirs, "step", seconds, seed=r, quiet=quiet))
            samples["ours_chunk"].append(_measure(ours, "chunk", seconds, seed=r, quiet=quiet))
            _log(f"round {r}: " + "  ".join(f"{k} {v[-1]['env_steps_per_s']:.1f}" for k, v in samples.items()))
    finally:
        workers = ours.env.num_workers
        ours.close()
        theirs.close()
    rows = {k: _best(v) for k, v in samples.items()}
    base = rows["maniskill_async_step"]
    row = {"settings": {"task_id": task_id, "num_envs": n, "image_size": image_size, "cameras": ["agentview", "wrist"],
                        "control_mode": "pd_ee_delta_pose", "max_episode_steps": max_steps, "chunk": 8,
                        "seconds_per_sample": seconds, "rounds": rounds, "our_workers": workers,
                        "baseline": "gymnasium.vector.AsyncVectorEnv (spawn), one process per env, each ManiSkill's "
                                    "env with obs_mode=rgb wrapped in TimeLimit + CPUGymWrapper"},
           "startup_s": {"ours": round(ours_start_s, 1), "maniskill_async": round(theirs_start_s, 1)},
           "results": rows,
           "summary": {"ours_step_over_maniskill_async": round(rows["ours_step"]["env_steps_per_s"]
                                                               / base["env_steps_per_s"], 3),
                       "ours_chunk_over_maniskill_async_step": round(rows["ours_chunk"]["env_steps_per_s"]
                                                                     / base["env_steps_per_s"], 3),
                       "per_cpu_s: ours_step_over_maniskill_async": round(rows["ours_step"]["steps_per_cpu_s"]
                                                                          / base["steps_per_cpu_s"], 3)},
           "machine": {"cpu_count": os.cpu_count(), "loadavg_start": [round(x, 2) for x in load0],
                       "loadavg_end": [round(x, 2) for x in os.getloadavg()], "renderer": "Mesa lavapipe (Vulkan)",
                       "waited_for_quiet_s": round(quiet.waited, 1)},
           "wall_s": round(time.perf_counter() - t0, 1)}
    if out is not None:
        merge_result(out, KEY, row)
    return row


class BenchManiSkillEnvConfig(Config):
    """`vla-rl bench env --backend maniskill`: our vector env vs ManiSkill's CPU AsyncVectorEnv."""

    task_id: str = "maniskill/PickCube-v1"
    n: int = Field(16, ge=1, description="envs in each vector env")
    image_size: int = Field(64, ge=16)
    seconds: float = Field(6.0, gt=0, description="wall time of one sample")
    rounds: int = Field(2, ge=1, description="interleaved samples per figure; the best is kept")
    quiet_budget_s: float = Field(10.0, ge=0, description="seconds to wait in all for a quiet machine")
    out: str = "bench/results/env.json"


def main(argv: list[str]) -> None:
    from vla_rl.cli import parse_args

    cfg = parse_args(BenchManiSkillEnvConfig, argv, "bench env --backend maniskill")
    row = run_maniskill_env_bench(**cfg.model_dump())
    print(json.dumps({"results": {k: v["env_steps_per_s"] for k, v in row["results"].items()},
                      "summary": row["summary"]}, indent=2))
