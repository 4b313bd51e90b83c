"""`vla-rl bench distributed`: the env workers as Ray actors (`RayVectorEnv`) against local worker processes
(`SubprocVectorEnv`) with the same number of workers on this machine; writes ``bench/results/distributed.json``.

Measured, best of ``repeats`` rounds each, local and Ray rounds interleaved (other load falls on both alike; the
results record the load average before and after):

* env steps/s of uniform random chunks through the one episode loop (`run_waves`), local and Ray, and their ratio
  (issue 31's target: Ray >= 0.85 of local);
* env steps/s of the full rollout loop (`collect_rollouts`, the ``tiny`` VLA with random weights), local and Ray;
* the cost of one call fanned out to every worker with no env work (``call("max_steps")``), for 1, 2 and 4 workers:
  the per-call overhead of each transport, and its growth per worker;
* rollout env steps/s on the Ray env actors with the driver inferring vs one inference actor, and the time of one
  act call each way (`inference_actor_rates`);
* start-up: ``ray.init`` (when this bench starts Ray) and building the envs in actors vs processes;
* each side's largest worker RSS (MB) after the rounds.

From these, a projection for 1-64 nodes (`project`); its assumptions are written into the results.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field

import sims.mujoco  # noqa: F401  (MUJOCO_GL default before mujoco is imported)
from bench.rollout_bench import env_only_rate, random_policy
from sims.vector import SubprocVectorEnv
from vla_rl.config import Config
from vla_rl.envs import make_env


class BenchDistributedConfig(Config):
    """`vla-rl bench distributed`: Ray actors vs local worker processes, and a projection to more nodes."""

    task: str = "mujoco/PickCube-v1"
    num_envs: int = Field(16, ge=2)
    num_workers: int = Field(2, ge=1, description="env workers: processes (local) or actors (Ray)")
    group_size: int = Field(8, ge=1, description="rollouts per seed in the rollout-loop measurement")
    seconds: float = Field(3.0, gt=0, description="length of one env-only round")
    repeats: int = Field(2, ge=1, description="rounds per measurement; the best is kept")
    calls: int = Field(200, ge=1, description="fan-out calls timed per worker count")
    overhead_workers: list[int] = Field([1, 2, 4], description="worker counts of the fan-out overhead measurement")
    address: str | None = Field(None, description="Ray cluster to join; None: start Ray here")
    torch_threads: int = Field(1, ge=1, description="policy threads in the rollout loop (1: the least sensitive to "
                               "other load on the cores; the policy's time is the same for both transports)")
    workers_per_node: int = Field(16, ge=1, description="projection: env workers per node (one per core)")
    out: str = "bench/results/distributed.json"


def fanout_s(env: Any, calls: int) -> float:
    """Mean seconds of one ``call("max_steps")`` on every env: a round trip to each worker with no env work."""
    env.call("max_steps")
    t0 = time.perf_counter()
    for _ in range(calls):
        env.call("max_steps")
    return (time.perf_counter() - t0) / calls


def rollout_rate(env: Any, policy: Any, seeds: int, group_size: int, repeats: int) -> float:
    """Env steps/s of `collect_rollouts` (sequential), best of ``repeats``."""
    from vla_rl.rollout.robot import collect_rollouts

    best = 0.0
    for _ in range(repeats):
        r = collect_rollouts(env, policy, list(range(seeds)), group_size, 1.6, torch.Generator().manual_seed(0))
        best = max(best, r.env_steps / r.wall_s)
    return best


def timed(build: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = build()
    return out, time.perf_counter() - t0


def interleaved_rates(makers: dict[str, Callable[[int, list], Any]], fns: list, cfg: BenchDistributedConfig,
                      policy: Any) -> dict[str, dict[str, float]]:
    """Start-up seconds and env-only / rollout env steps/s of each transport, their rounds interleaved (the best
    of ``repeats`` each), so that load from other processes falls on both alike."""
    envs, out = {}, {}
    try:
        for side, make in makers.items():
            envs[side], start_s = timed(lambda make=make: make(cfg.num_workers, fns))
            out[side] = {"start_s": round(start_s, 2), "env_only_env_steps_per_s": 0.0, "rollout_env_steps_per_s": 0.0}
        seeds = max(1, cfg.num_envs // cfg.group_size)
        for _ in range(cfg.repeats):
            for side, env in envs.items():
                m = out[side]
                m["env_only_env_steps_per_s"] = max(m["env_only_env_steps_per_s"], round(
                    env_only_rate(env, policy.config.chunk_size, 1, cfg.seconds), 1))
                m["rollout_env_steps_per_s"] = max(m["rollout_env_steps_per_s"], round(
                    rollout_rate(env, policy, seeds, cfg.group_size, 1), 1))
        for side, env in envs.items():  # after the rounds: the workers' resident memory, as the metrics report it
            out[side]["worker_rss_mb_max"] = round(max(worker_rss_mb(env)), 1)
    finally:
        for env in envs.values():
            env.close()
    return out


def inference_actor_rates(fns: list, cfg: BenchDistributedConfig, policy: Any, cores: int) -> dict[str, Any]:
    """Rollout env steps/s on Ray env actors with the driver inferring vs one inference actor (`RemotePolicy`),
    rounds interleaved, and the milliseconds of one act call on ``num_envs`` rows each way. The env actors and the
    inference actor share the cores (one CPU each while they fit)."""
    from vla_rl.distributed.config import DistributedConfig
    from vla_rl.distributed.inference import RemotePolicy
    from vla_rl.distributed.ray_env import RayVectorEnv
    from vla_rl.distributed.weights import WeightBoard
    from vla_rl.policies.base import cpu_state

    dist = DistributedConfig(backend="ray", address=cfg.address, inference_actors=1,
                             inference_cpus=min(1.0, cores / (cfg.num_workers + 1)))
    remote = RemotePolicy(policy, dist, threads=cfg.torch_threads)
    remote.use(WeightBoard().publish(cpu_state(policy), 0))
    env = RayVectorEnv(fns, cfg.num_workers, name=cfg.task, actor_cpus=min(1.0, cores / (cfg.num_workers + 1)))
    seeds = max(1, cfg.num_envs // cfg.group_size)
    out = {"driver_rollout_env_steps_per_s": 0.0, "actor_rollout_env_steps_per_s": 0.0}
    try:
        batch = _act_batch(env, policy)
        call_ms = {}
        for side, p in (("driver", policy), ("actor", remote)):
            p.act(batch, temperature=1.6)  # warm (the actor loads the weights on its first call)
            t0 = time.perf_counter()
            for _ in range(20):
                p.act(batch, temperature=1.6, generator=torch.Generator().manual_seed(0))
            call_ms[side] = round((time.perf_counter() - t0) / 20 * 1e3, 2)
        for _ in range(cfg.repeats):
            for side, p in (("driver", policy), ("actor", remote)):
                key = f"{side}_rollout_env_steps_per_s"
                out[key] = max(out[key], round(rollout_rate(env, p, seeds, cfg.group_size, 1), 1))
    finally:
        env.close()
        remote.close()
    return out | {"act_call_ms": call_ms, "rows_per_call": cfg.num_envs,
                  "actor_over_driver": round(out["actor_rollout_env_steps_per_s"]
                                             / out["driver_rollout_env_steps_per_s"], 3)}


def _act_batch(env: Any, policy: Any) -> Any:
    """The policy's batch for every env's first observation."""
    obs, info = env.reset(seed=list(range(env.num_envs)))
    instructions = list(info["instruction"])
    proc = policy.processor()
    state = obs["state"] if proc.state_stats is not None else None
    return proc.batch(proc.images({c: obs[c] for c in proc.cameras}), instructions, state)


def worker_rss_mb(env: Any) -> list[float]:
    """Resident MB of each env worker: the Ray actors' own reports (`RayVectorEnv.rss_mb`), the local processes'
    from /proc."""
    from vla_rl.distributed.ray_env import rss_mb

    sizes = env.rss_mb if hasattr(env, "rss_mb") else [rss_mb(pid) for pid in env.worker_pids]
    return [r for r in sizes if r is not None] or [float("nan")]


def fanout_ms(make: Callable[[int, list], Any], fns: list, cfg: BenchDistributedConfig) -> dict[str, float]:
    """Milliseconds of one no-work call fanned out to ``w`` workers (one env each), per ``w`` in overhead_workers."""
    out = {}
    for w in cfg.overhead_workers:
        env = make(w, fns[:1] * w)
        try:
            out[str(w)] = round(fanout_s(env, cfg.calls) * 1e3, 3)
        finally:
            env.close()
    return out


def per_worker_cost_ms(fanout_ms: dict[str, float]) -> tuple[float, float]:
    """Least-squares fit of fan-out ms = a + b x workers: (a, b)."""
    w = np.array([int(k) for k in fanout_ms], float)
    y = np.array(list(fanout_ms.values()), float)
    if len(w) < 2:
        return float(y[0]), 0.0
    b, a = np.polyfit(w, y, 1)
    return float(a), float(max(b, 0.0))


def project(per_worker_rate: float, envs_per_worker: int, chunk: int, a_ms: float, b_ms: float,
            workers_per_node: int, nodes: list[int]) -> list[dict[str, float]]:
    """Env steps/s of one rollout round on N nodes. A round: every worker steps its envs through one chunk
    (``envs_per_worker x chunk`` steps at ``per_worker_rate``), the workers in parallel, then the driver's fan-out
    (``a + b x workers`` ms, serial). Rate = workers x envs_per_worker x chunk / (sim time + fan-out time)."""
    rows = []
    sim_s = envs_per_worker * chunk / per_worker_rate
    for n in nodes:
        workers = n * workers_per_node
        fan_s = (a_ms + b_ms * workers) / 1e3
        rate = workers * envs_per_worker * chunk / (sim_s + fan_s)
        rows.append({"nodes": n, "workers": workers, "env_steps_per_s": round(rate, 0),
                     "fanout_share": round(fan_s / (sim_s + fan_s), 3)})
    return rows


def run_distributed_bench(task: str = "mujoco/PickCube-v1", num_envs: int = 16, num_workers: int = 2,
                          group_size: int = 8, seconds: float = 3.0, repeats: int = 2, calls: int = 200,
                          overhead_workers: list[int] | None = None, address: str | None = None,
                          torch_threads: int = 1, workers_per_node: int = 16,
                          out: str | Path | None = "bench/results/distributed.json") -> dict[str, Any]:
    from vla_rl.distributed.cluster import connect
    from vla_rl.distributed.ray_env import RayVectorEnv

    cfg = BenchDistributedConfig(task=task, num_envs=num_envs, num_workers=num_workers, group_size=group_size,
                                 seconds=seconds, repeats=repeats, calls=calls,
                                 overhead_workers=overhead_workers or [1, 2, 4], address=address,
                                 torch_threads=torch_threads, workers_per_node=workers_per_node)
    torch.set_num_threads(torch_threads)
    fns = [partial(make_env, task, image_size=64, cameras=("agentview",))] * num_envs
    policy = random_policy().eval()
    cores = os.cpu_count() or 1
    import ray

    load_before = os.getloadavg()[0]
    started = not ray.is_initialized()
    _, init_s = timed(lambda: connect(address))
    makers = {"local": lambda w, f: SubprocVectorEnv(f, w, name=task),
              # one CPU per actor while they fit the machine (as the local processes), then shares of it
              "ray": lambda w, f: RayVectorEnv(f, w, name=task, actor_cpus=min(1.0, cores / w))}
    try:
        rates = interleaved_rates(makers, fns, cfg, policy)
        local = rates["local"] | {"fanout_call_ms": fanout_ms(makers["local"], fns, cfg)}
        on_ray = rates["ray"] | {"fanout_call_ms": fanout_ms(makers["ray"], fns, cfg)}
        inference = inference_actor_rates(fns, cfg, policy, cores)
    finally:
        if started:
            ray.shutdown()
    a_ms, b_ms = per_worker_cost_ms(on_ray["fanout_call_ms"])
    per_worker = on_ray["env_only_env_steps_per_s"] / num_workers
    envs_per_worker = max(1, num_envs // num_workers)
    chunk = policy.config.chunk_size
    doc = {
        "machine": {"cpu_count": cores, "platform": platform.platform(), "python": sys.version.split()[0],
                    "ray": ray.__version__, "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
                    "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]},
        "settings": cfg.model_dump(exclude={"out"}) | {"image_size": 64, "chunk": chunk,
                                                       "policy": "tiny (random weights)"},
        "local": local,
        "ray": on_ray | {"ray_init_s": round(init_s, 2) if started else None},
        "ray_over_local": {
            "env_only": round(on_ray["env_only_env_steps_per_s"] / local["env_only_env_steps_per_s"], 3),
            "rollout": round(on_ray["rollout_env_steps_per_s"] / local["rollout_env_steps_per_s"], 3)},
        "inference_actor": inference,
        "projection": {
            "assumptions": [
                f"each node runs {workers_per_node} env workers (one per core), each at the per-worker rate "
                f"measured here on Ray ({per_worker:.0f} env steps/s: env-only rate / workers)",
                f"each worker holds {envs_per_worker} envs and steps them one chunk ({chunk} steps) per round",
                f"the driver fans every round out to all workers at a + b x workers ms, fitted to the fan-out "
                f"calls measured here (a = {a_ms:.3f} ms, b = {b_ms:.3f} ms per worker), serially after the "
                "simulation (no overlap)",
                "policy inference and the update are not included (GPU nodes; they add time per round)",
                "the measured per-worker rate already includes this machine's fan-out to 2 workers, so the fan-out "
                "is counted about twice at 1 node (conservative)",
                "the network adds nothing beyond the measured object-store round trip (same-machine nodes here)",
            ],
            "rows": project(per_worker, envs_per_worker, chunk, a_ms, b_ms, workers_per_node, [1, 2, 4, 8, 16, 32, 64]),
        },
    }
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(doc, indent=2))
    return doc


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import parse_args

    cfg = parse_args(BenchDistributedConfig, list(sys.argv[1:] if argv is None else argv), "bench distributed")
    doc = run_distributed_bench(**cfg.model_dump())
    print(json.dumps({k: doc[k] for k in doc if k not in ("machine", "settings")}, indent=2))


if __name__ == "__main__":
    main()
