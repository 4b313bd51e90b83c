"""The LIBERO row of `vla-rl bench env`: our vector env of `LiberoEnv` against LIBERO's own ``SubprocVectorEnv``.

    vla-rl bench env --backend libero [num_envs=8 image_size=128 steps=32]

Results go under the ``libero`` key of ``bench/results/env.json``; the other backends' keys are kept.
"""

from __future__ import annotations

import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

import vla_rl.envs
from bench.env_bench import _TICK, CHUNK, _log, _machine, _machine_busy_ticks, _Ours, _own_cpu_s
from bench.results_io import merge_result
from vla_rl.config import Config


class BenchLiberoConfig(Config):
    """`vla-rl bench env --backend libero`: our `SubprocVectorEnv` of `LiberoEnv` vs LIBERO's own
    ``SubprocVectorEnv`` of its ``OffScreenRenderEnv`` (one process per env, camera observations every step), same
    task, cameras (agentview + wrist) and size, random actions from the official init states."""

    task_id: str = "libero/spatial/0"
    num_envs: int = Field(16, ge=1, description="envs in each vector env")
    image_size: int = Field(128, ge=16)
    steps: int = Field(32, ge=8, description="control steps per env measured (after one warm-up call)")
    out: str = "bench/results/env.json"


def run_libero_bench(task_id: str = "libero/spatial/0", num_envs: int = 16, image_size: int = 128, steps: int = 32,
                     out: str | Path | None = "bench/results/env.json") -> dict[str, Any]:
    """Env steps/s and memory of three runs, each on a fresh vector env of ``num_envs`` envs; writes the document
    under the key ``libero`` of ``out`` (the other keys stay).

    * ``libero_subproc``: LIBERO's ``SubprocVectorEnv`` as the peers use it (``reset``, ``set_init_state``, then
      ``step``): every env renders both cameras at every control step;
    * ``ours_step``: ours, one control step per call, every env renders both cameras after every step (the same
      work);
    * ``ours_chunk``: ours, chunks of `CHUNK` steps per call, one render per chunk (how our rollouts step).

    Memory is the proportional set size (PSS: shared pages split between the processes sharing them) summed over
    the vector env's processes, after the measurement.
    """
    from sims.libero.env import LiberoEnv  # the libero extra: `make install-libero`

    _libero_memory_fits(num_envs)
    t0 = time.perf_counter()
    probe = vla_rl.envs.make_env(task_id, image_size=image_size)
    assert isinstance(probe, LiberoEnv), f"{task_id} is not a LIBERO task"
    init_states = probe.init_states
    their_args = {"bddl_file_name": probe.bddl_file, "camera_heights": image_size, "camera_widths": image_size}
    probe.close()
    doc: dict[str, Any] = {"machine": _machine(os.cpu_count() or 1), "settings": {
        "task_id": task_id, "num_envs": num_envs, "image_size": image_size, "cameras": ["agentview", "wrist"],
        "steps_per_env": steps, "chunk": CHUNK, "actions": "uniform [-1, 1], from official init states 0..N-1",
        "unit": "env steps/s = control steps summed over envs per wall-clock second"}, "results": {}}
    runs = {"libero_subproc": partial(_libero_theirs, their_args, init_states),
            "ours_step": partial(_libero_ours, mode="step"), "ours_chunk": partial(_libero_ours, mode="chunk")}
    for name, run in runs.items():
        doc["results"][name] = row = run(task_id, num_envs, image_size, steps)
        _log(f"LIBERO N={num_envs} {name}: {row['env_steps_per_s']:.1f} env steps/s, build {row['build_s']:.0f} s, "
             f"{row['pss_mb']:.0f} MB")
    doc["summary"] = _libero_summary(doc["results"], num_envs)
    doc["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    if out is not None:
        merge_result(out, "libero", doc)
    return doc


LIBERO_ENV_MB = 1900  # measured PSS of one LIBERO env at 128 px (its scene's textures; either vectorisation)


def _libero_memory_fits(n: int) -> None:
    """Refuse, before starting anything, ``n`` LIBERO envs that would not fit in the machine's available memory."""
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return
    available = int(next(x for x in meminfo.splitlines() if x.startswith("MemAvailable:")).split()[1]) / 1024
    need = n * LIBERO_ENV_MB
    if need > 0.9 * available:
        fits = max(1, int(0.9 * available // LIBERO_ENV_MB))
        raise SystemExit(f"{n} LIBERO envs need ~{need / 1024:.0f} GB ({LIBERO_ENV_MB} MB each), "
                         f"{available / 1024:.0f} GB is available: pass num_envs={fits} or fewer")


def _libero_summary(results: dict[str, dict[str, Any]], n: int) -> dict[str, Any]:
    """Ours over LIBERO's, by wall clock and per CPU-second (robust to other load: LIBERO's one process per env
    takes a larger share of a busy machine than our one per core), and the memory per env."""
    theirs = results["libero_subproc"]
    out: dict[str, Any] = {}
    for name in ("ours_step", "ours_chunk"):
        for unit in ("env_steps_per_s", "steps_per_cpu_s"):
            suffix = "" if unit == "env_steps_per_s" else "_per_cpu_s"
            out[f"{name}_over_libero{suffix}"] = round(results[name][unit] / theirs[unit], 3)
    out["pss_mb_per_env"] = {k: round(r["pss_mb"] / n, 1) for k, r in results.items()}
    return out


def _libero_theirs(env_args: dict[str, Any], init_states: np.ndarray, task_id: str, n: int, image_size: int,
                   steps: int) -> dict[str, Any]:
    """LIBERO's ``SubprocVectorEnv`` (``fork``, one process per env) of ``OffScreenRenderEnv`` (its default
    cameras: agentview and robot0_eye_in_hand, observed at every step)."""
    from sims.libero.env import _libero

    venv_cls = _libero("envs").SubprocVectorEnv
    t0 = time.perf_counter()
    venv = venv_cls([partial(_libero_offscreen_env, env_args) for _ in range(n)])
    try:
        venv.reset()
        venv.set_init_state(init_states[np.arange(n) % len(init_states)])
        build_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        venv.step(rng.uniform(-1, 1, (n, 7)))  # warm

        def advance() -> int:
            obs, *_ = venv.step(rng.uniform(-1, 1, (n, 7)))
            shape = (image_size, image_size, 3)
            assert obs[0]["agentview_image"].shape == obs[0]["robot0_eye_in_hand_image"].shape == shape
            return n

        row = _libero_timed(advance, steps * n, [w.process.pid for w in venv.workers])
    finally:
        venv.close()
    return {**row, "build_s": round(build_s, 1), "processes": n}


def _libero_offscreen_env(env_args: dict[str, Any]) -> Any:
    from sims.libero.env import _libero

    return _libero("envs").OffScreenRenderEnv(**env_args)


def _libero_ours(task_id: str, n: int, image_size: int, steps: int, mode: str) -> dict[str, Any]:
    """Our `SubprocVectorEnv` (default workers: one per core) of `LiberoEnv`, from the official init states."""
    from vla_rl.splits import split_seeds

    t0 = time.perf_counter()
    runner = _Ours(task_id, n, image_size, step_timeout_s=600.0)  # a worker's first reset builds its envs: minutes
    try:
        seeds = split_seeds("test", n % 50 or 50)
        runner.env.reset(seed=[seeds[i % len(seeds)] for i in range(n)])
        build_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        runner.advance(mode, rng)  # warm
        row = _libero_timed(lambda: runner.advance(mode, rng), steps * n, runner.pids())
        row["num_workers"] = runner.env.num_workers
    finally:
        runner.close()
    return {**row, "build_s": round(build_s, 1), "processes": row["num_workers"]}


def _libero_timed(advance: Any, env_steps: int, pids: list[int]) -> dict[str, Any]:
    """Call ``advance() -> env steps`` until ``env_steps`` were made (summed over envs); rate, CPU and memory."""
    busy0, cpu0, t0 = _machine_busy_ticks(), _own_cpu_s(pids), time.perf_counter()
    total = 0
    while total < env_steps:
        done = advance()
        if done == 0:
            raise RuntimeError("no env stepped: a worker was lost (see the log above)")
        total += done
    elapsed = time.perf_counter() - t0
    cpu = _own_cpu_s(pids) - cpu0
    others = max(0.0, (_machine_busy_ticks() - busy0) / _TICK - cpu) / elapsed
    return {"env_steps_per_s": round(total / elapsed, 2), "steps_per_cpu_s": round(total / max(cpu, 1e-9), 2),
            "others_cores": round(others, 2), "seconds": round(elapsed, 1), "env_steps": total,
            "pss_mb": round(sum(_pss_mb(p) for p in [os.getpid(), *pids]), 1)}


def _pss_mb(pid: int) -> float:
    """A process's proportional set size in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import parse_args

    cfg = parse_args(BenchLiberoConfig, list(sys.argv[1:] if argv is None else argv), "bench env --backend libero")
    print(json.dumps(run_libero_bench(**cfg.model_dump())["summary"], indent=2))


if __name__ == "__main__":
    main()
