"""`vla-rl bench rollout`: env steps/s of the full rollout loop (tiny VLA + sims), sequential vs pipelined,
beside the env-only and policy-only rates, in one run; writes ``bench/results/rollout.json``.

The policy is the ``tiny`` preset with random weights (speed does not depend on the weights; episodes
run to their step limit, which is the worst case for env work). Sequential: infer for all live envs,
then step them all. Pipelined: two halves of the env workers alternate, one simulating while the
policy infers for the other.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pydantic import Field

import sims.mujoco  # noqa: F401  (MUJOCO_GL default before mujoco is imported)
from sims.vector import SubprocVectorEnv
from vla_rl.config import Config
from vla_rl.envs import make_env

if TYPE_CHECKING:
    from vla_rl.policies.vla.configuration_vla import VLAConfig
    from vla_rl.policies.vla.modeling_vla import VLAPolicy


class BenchRolloutConfig(Config):
    """`vla-rl bench rollout`: rollout-loop throughput, sequential vs pipelined."""

    task: str = "mujoco/PickCube-v1"
    num_envs: int = Field(16, ge=2)
    num_workers: int = Field(2, ge=2)
    seeds: int = Field(4, ge=1, description="initial states per rollout round")
    group_size: int = Field(8, ge=1)
    repeats: int = Field(2, ge=1, description="rounds per mode; the best is kept")
    torch_threads: int | None = Field(None, ge=1, description="policy threads (default: torch's)")
    out: str = "bench/results/rollout.json"


def random_policy(config: VLAConfig | None = None) -> VLAPolicy:
    """A VLA with random weights (seed 0) and the tasks' instruction tokenizer; ``config`` (`VLAConfig`)
    defaults to the ``tiny`` preset. Speed does not depend on the weights."""
    from vla_rl.policies.tokenizer import build_tokenizer
    from vla_rl.policies.vla.configuration_vla import vla_preset
    from vla_rl.policies.vla.modeling_vla import VLAPolicy
    from vla_rl.policies.vla.processor_vla import NormStats
    from vla_rl.trainers.sft import all_instructions

    torch.manual_seed(0)
    tok = build_tokenizer(all_instructions(), vocab_size=512)
    return VLAPolicy(config or vla_preset("tiny"), len(tok), NormStats(-np.ones(7), np.ones(7)),
                     NormStats(-np.ones(8), np.ones(8)), tokenizer=tok)


def env_only_rate(env: SubprocVectorEnv, chunk: int, repeats: int, seconds: float = 3.0) -> float:
    """Env steps/s of uniform random chunks (`run_waves`, waves of ``num_envs`` episodes), best of ``repeats``."""
    from vla_rl.evaluation import RandomPolicy
    from vla_rl.rollout.episodes import run_waves

    policy, best = RandomPolicy(0, chunk), 0.0
    for _ in range(repeats):
        t0, steps = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:  # whole waves: an episode runs to its step limit
            steps += sum(r["steps"] for r in run_waves(env, policy, list(range(env.num_envs))))
        best = max(best, steps / (time.perf_counter() - t0))
    return best


def policy_only_rate(env: SubprocVectorEnv, policy: VLAPolicy, repeats: int, seconds: float = 3.0) -> float:
    """One batched chunk decode for all envs, counted as the env steps it commands, per second (best of
    ``repeats``)."""
    obs, info = env.reset(seed=list(range(env.num_envs)))
    batch = policy.processor()(obs, info["instruction"])
    policy.act(batch, temperature=1.6)
    best = 0.0
    for _ in range(repeats):
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            policy.act(batch, temperature=1.6)
            n += 1
        best = max(best, n * env.num_envs * policy.config.chunk_size / (time.perf_counter() - t0))
    return best


def loop_rates(env: SubprocVectorEnv, policy: VLAPolicy, seeds: int, group_size: int,
               repeats: int) -> dict[str, dict[str, float]]:
    """`collect_rollouts` sequential and pipelined, with torch's default threads and with 1: the best round of each,
    keyed ``<mode>@<threads>thread(s)``."""
    from vla_rl.rollout.robot import collect_rollouts

    loops: dict[str, dict[str, float]] = {}
    default_threads = torch.get_num_threads()
    for threads in sorted({default_threads, 1}, reverse=True):
        torch.set_num_threads(threads)
        for mode in ("sequential", "pipelined") * repeats:
            r = collect_rollouts(env, policy, list(range(seeds)), group_size, 1.6,
                                 torch.Generator().manual_seed(0), pipelined=mode == "pipelined")
            rate = r.env_steps / r.wall_s
            key = f"{mode}@{threads}thread{'s' if threads > 1 else ''}"
            if rate > loops.get(key, {}).get("env_steps_per_s", 0.0):
                loops[key] = {"env_steps_per_s": round(rate, 1), "env_steps": r.env_steps,
                              "wall_s": round(r.wall_s, 2), "policy_s": round(r.policy_s, 2)}
    torch.set_num_threads(default_threads)
    return loops


def run_rollout_bench(task: str = "mujoco/PickCube-v1", num_envs: int = 16, num_workers: int = 2, seeds: int = 4,
                      group_size: int = 8, repeats: int = 2, torch_threads: int | None = None,
                      out: str | Path | None = "bench/results/rollout.json") -> dict[str, Any]:
    if torch_threads:
        torch.set_num_threads(torch_threads)
    factory = partial(make_env, task, image_size=64, cameras=("agentview",))
    env = SubprocVectorEnv([factory] * num_envs, num_workers, name=task)
    try:
        policy = random_policy().eval()
        chunk = policy.config.chunk_size
        best_env = env_only_rate(env, chunk, repeats)
        best_pol = policy_only_rate(env, policy, repeats)
        loops = loop_rates(env, policy, seeds, group_size, repeats)
    finally:
        env.close()
    serial_bound = 1.0 / (1.0 / best_env + 1.0 / best_pol)  # no overlap at all
    doc = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                    "torch_threads": torch.get_num_threads(), "MUJOCO_GL": os.environ.get("MUJOCO_GL")},
        "settings": {"task": task, "num_envs": num_envs, "num_workers": num_workers, "image_size": 64,
                     "chunk": chunk, "seeds": seeds, "group_size": group_size, "policy": "tiny (random weights)"},
        "env_only_env_steps_per_s": round(best_env, 1),
        "policy_only_env_steps_per_s": round(best_pol, 1),
        "no_overlap_bound_env_steps_per_s": round(serial_bound, 1),
        "loop": loops,
        "best_pipelined_over_best_sequential": round(
            max(v["env_steps_per_s"] for k, v in loops.items() if k.startswith("pipelined"))
            / max(v["env_steps_per_s"] for k, v in loops.items() if k.startswith("sequential")), 3),
        "note": "policy-only and env-only rates use the default torch threads; the loop is run with the default "
                "and with 1 policy thread (pipelining needs a core left for the simulating half)",
    }
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(doc, indent=2))
    return doc


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import parse_args

    cfg = parse_args(BenchRolloutConfig, list(sys.argv[1:] if argv is None else argv), "bench rollout")
    doc = run_rollout_bench(**cfg.model_dump())
    print(json.dumps({k: doc[k] for k in doc if k not in ("machine", "settings")}, indent=2))


if __name__ == "__main__":
    main()
