"""Env throughput: `SubprocVectorEnv` vs Gymnasium's ``AsyncVectorEnv`` vs a sequential loop vs the limit.

Figures are env steps/s: control steps summed over the envs, per wall-clock second, random actions,
episode resets included. Two modes:

* ``step``: one control step per call, every env renders (both cameras) after every step;
* ``chunk``: ``CHUNK`` (8) control steps per call, rendering once at the end of the chunk.

Contestants, all with the same `ArmEnv` (``vla_rl.envs.make_env``):

* ``ours``: `sims.vector.SubprocVectorEnv` (default workers: one per core);
* ``async``: ``gymnasium.vector.AsyncVectorEnv(shared_memory=True)``, one process per env (``spawn``);
  in chunk mode each env is wrapped by `ChunkActionWrapper` (action ``(8, 7)``, one render per chunk);
* ``sequential``: a plain loop over N envs in this process.

The limit: one process's raw physics control steps/s (no render) and render frames/s (both cameras, one
llvmpipe thread), measured in a fresh process; the ideal env steps/s of a mode is the per-core rate of
that mode (``1 / (1/physics + 1/render)`` for step, ``8 / (8/physics + 1/render)`` for chunk) times
``os.cpu_count()``. Interleaving physics and rendering costs more than the two tight loops suggest, so the
limit also reports a practical figure: one env's own step+render loop in that process, times the cores.

The bench machine may be shared: every sample records how many cores other processes used meanwhile
(``others_cores``) and the env steps per CPU-second our process tree spent (``steps_per_cpu_s``);
each figure is the best of ``rounds`` interleaved samples.

Run: ``vla-rl bench env`` (or ``python -m bench.env_bench``; ``--help`` for options); writes
``bench/results/env.json``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from pydantic import Field

import sims.mujoco  # noqa: F401  (sets the MUJOCO_GL=egl default before anything imports mujoco)
import vla_rl.envs
from sims.vector import SubprocVectorEnv
from vla_rl.config import Config

CHUNK = 8
MODES = ("step", "chunk")
_TICK = os.sysconf("SC_CLK_TCK")


class ChunkActionWrapper(gym.Wrapper):
    """Makes an `ArmEnv` take a chunk of actions ``(T, 7)`` per ``step`` and render once at its end."""

    def __init__(self, env: gym.Env, chunk: int = CHUNK) -> None:
        super().__init__(env)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (chunk, 7), np.float32)

    def step(self, action: np.ndarray):
        return self.env.unwrapped.step_chunk(action, render=True)


def make_env(task_id: str, image_size: int, chunk: int | None = None) -> gym.Env:
    """One `ArmEnv` (wrapped for chunks when ``chunk``); module-level so that ``spawn`` can pickle it."""
    env = vla_rl.envs.make_env(task_id, image_size=image_size)
    return ChunkActionWrapper(env, chunk) if chunk else env


# ---- contestants: reset(), advance(mode, rng) -> control steps, pids(), close() -----------------


class _Ours:
    """Our `SubprocVectorEnv`, stepped call by call like the baselines (not through the episode loop,
    `vla_rl.rollout.episodes.run_waves`): the figure is the vector env's own stepping rate, sampled on the same
    call boundaries as Gymnasium's; `vla-rl bench rollout` measures the episode loop."""

    def __init__(self, task_id: str, n: int, image_size: int, **kwargs: Any) -> None:
        factory = partial(vla_rl.envs.make_env, task_id, image_size=image_size)
        self.env = SubprocVectorEnv([factory] * n, name=task_id, **kwargs)
        self.n = n
        self.done = np.zeros(n, bool)
        self.episodes = 0

    def reset(self) -> None:
        self.env.reset(seed=self.episodes * self.n)
        self.episodes += 1
        self.done[:] = False

    def advance(self, mode: str, rng: np.random.Generator) -> int:
        if self.done.all():
            self.reset()
        if mode == "step":
            out = self.env.step(rng.uniform(-1, 1, (self.n, 7)).astype(np.float32), active=~self.done)
        else:
            out = self.env.step_chunk(rng.uniform(-1, 1, (self.n, CHUNK, 7)).astype(np.float32), active=~self.done)
        self.done |= out[2] | out[3]
        return int(out[4]["steps"].sum())

    def pids(self) -> list[int]:
        return self.env.worker_pids

    def close(self) -> None:
        self.env.close()


class _Async:
    def __init__(self, task_id: str, n: int, image_size: int, mode: str) -> None:
        from functools import partial

        chunk = CHUNK if mode == "chunk" else None
        self.env = gym.vector.AsyncVectorEnv([partial(make_env, task_id, image_size, chunk)] * n,
                                             shared_memory=True, context="spawn")
        self.n, self.mode = n, mode

    def reset(self) -> None:
        self.env.reset(seed=0)

    def advance(self, mode: str, rng: np.random.Generator) -> int:
        assert mode == self.mode
        shape = (self.n, 7) if mode == "step" else (self.n, CHUNK, 7)
        *_, info = self.env.step(rng.uniform(-1, 1, shape).astype(np.float32))  # auto-resets (next step)
        if "steps" not in info:
            return 0
        return int(np.asarray(info["steps"])[info["_steps"]].sum())

    def pids(self) -> list[int]:
        return [p.pid for p in self.env.processes]

    def close(self) -> None:
        self.env.close()


class _Sequential:
    def __init__(self, task_id: str, n: int, image_size: int) -> None:
        self.envs = [make_env(task_id, image_size) for _ in range(n)]
        self.n = n
        self.done = np.zeros(n, bool)
        self.episodes = 0

    def reset(self) -> None:
        for i, e in enumerate(self.envs):
            e.reset(seed=self.episodes * self.n + i)
        self.episodes += 1
        self.done[:] = False

    def advance(self, mode: str, rng: np.random.Generator) -> int:
        steps, obs = 0, []
        for i, e in enumerate(self.envs):
            if self.done[i]:
                o, _ = e.reset(seed=self.episodes * self.n + i)
                self.done[i] = False
            elif mode == "step":
                o, _, term, trunc, info = e.step(rng.uniform(-1, 1, 7).astype(np.float32))
                self.done[i], steps = term or trunc, steps + info["steps"]
            else:
                o, _, term, trunc, info = e.step_chunk(rng.uniform(-1, 1, (CHUNK, 7)).astype(np.float32))
                self.done[i], steps = term or trunc, steps + info["steps"]
            obs.append(o)
        _ = {k: np.stack([o[k] for o in obs]) for k in obs[0]}  # a batch, as the vector envs return
        self.episodes += int(self.done.any())
        return steps

    def pids(self) -> list[int]:
        return []

    def close(self) -> None:
        for e in self.envs:
            e.close()


# ---- measurement -----------------------------------------------------------------------------


def _proc_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _machine_busy_ticks() -> int:
    try:
        vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0
    return sum(vals) - vals[3] - vals[4]  # all but idle and iowait


def _own_cpu_s(pids: list[int]) -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime + sum(_proc_ticks(p) for p in pids) / _TICK


class _Quiet:
    """Before a sample, wait (within a total budget) until other processes use < ``threshold`` cores."""

    def __init__(self, budget_s: float, threshold: float = 0.3, window_s: float = 0.25) -> None:
        self.left, self.threshold, self.window = budget_s, threshold, window_s
        self.waited = 0.0

    def wait(self) -> None:
        while self.left > 0:
            b0 = _machine_busy_ticks()
            time.sleep(self.window)
            self.left -= self.window
            self.waited += self.window
            if (_machine_busy_ticks() - b0) / _TICK / self.window < self.threshold:
                return


def _measure(runner: Any, mode: str, seconds: float, seed: int, quiet: _Quiet | None = None) -> dict[str, float]:
    """Advance ``runner`` for about ``seconds``; env steps/s, steps per CPU-second, others' cores."""
    rng = np.random.default_rng(seed)
    pids = runner.pids()
    runner.advance(mode, rng)  # warm (first renders after a mode switch)
    if quiet is not None:
        quiet.wait()
    busy0, cpu0, t0 = _machine_busy_ticks(), _own_cpu_s(pids), time.perf_counter()
    steps = calls = 0
    while True:
        steps += runner.advance(mode, rng)
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and calls >= 3:
            break
    cpu = _own_cpu_s(pids) - cpu0
    others = max(0.0, (_machine_busy_ticks() - busy0) / _TICK - cpu) / elapsed
    return {"env_steps_per_s": steps / elapsed, "steps_per_cpu_s": steps / max(cpu, 1e-9),
            "others_cores": others, "seconds": elapsed}


def _best(samples: list[dict[str, float]]) -> dict[str, Any]:
    best = max(samples, key=lambda s: s["env_steps_per_s"])
    return {**{k: round(v, 3) for k, v in best.items()},
            "samples_env_steps_per_s": [round(s["env_steps_per_s"], 1) for s in samples]}


def _timed(fn: Any, seconds: float) -> tuple[int, float, float]:
    """Call ``fn() -> units`` for about ``seconds``; (units, wall s, CPU s of this process)."""
    units, t, c = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t < seconds:
        units += fn()
    return units, time.perf_counter() - t, time.process_time() - c


def _limit_worker(task_id: str, image_size: int, seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    """In a fresh process with one llvmpipe thread: physics control steps, render frames (both cameras)
    and one env's own step+render loop (both modes), each per wall second and per CPU second (best of
    ``rounds``)."""
    os.environ["LP_NUM_THREADS"] = "1"
    env = make_env(task_id, image_size)
    rng = np.random.default_rng(0)
    out = {c: np.empty((image_size, image_size, 3), np.uint8) for c in env.cameras}
    env.reset(seed=0)
    env.render_into(out)

    def stepper(t_len: int, render: bool) -> Any:
        def fn() -> int:
            _, _, term, trunc, info = env.step_chunk(rng.uniform(-1, 1, (t_len, 7)).astype(np.float32), render=render)
            if term or trunc:
                env.reset(seed=0)  # (renders too; rare: once per 60 steps)
            return info["steps"]
        return fn

    def render() -> int:
        env.render_into(out)
        return 1

    # physics alone, rendering alone, then the two interleaved as an env loop does them (colder caches)
    jobs = {"physics_steps": stepper(CHUNK, False), "render_frames": render,
            "loop_step_env_steps": stepper(1, True), "loop_chunk_env_steps": stepper(CHUNK, True)}
    best: dict[str, dict[str, float]] = {k: {"per_s": 0.0, "per_cpu_s": 0.0} for k in jobs}
    for _ in range(rounds):
        for k, fn in jobs.items():
            units, wall, cpu = _timed(fn, seconds / 2)
            best[k]["per_s"] = max(best[k]["per_s"], units / wall)
            best[k]["per_cpu_s"] = max(best[k]["per_cpu_s"], units / max(cpu, 1e-9))
    env.close()
    return best


def _limit(task_id: str, image_size: int, seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(_limit_worker, task_id, image_size, seconds, rounds).result()


def _limit_figures(runs: list[dict[str, dict[str, float]]], cpus: int) -> dict[str, Any]:
    """Best of several limit runs -> per-core rates and the ideal / practical env steps/s per mode."""
    best = {k: {u: max(r[k][u] for r in runs) for u in ("per_s", "per_cpu_s")} for k in runs[0]}
    doc: dict[str, Any] = {k: {u: round(v, 1) for u, v in d.items()} for k, d in best.items()}
    for unit in ("per_s", "per_cpu_s"):
        p, r = best["physics_steps"][unit], best["render_frames"][unit]
        per_core = {"step": 1.0 / (1.0 / p + 1.0 / r), "chunk": CHUNK / (CHUNK / p + 1.0 / r)}
        doc[f"ideal_env_steps_{unit}"] = {m: round(v * (cpus if unit == "per_s" else 1), 1)
                                          for m, v in per_core.items()}
        doc[f"practical_env_steps_{unit}"] = {
            m: round(best[f"loop_{m}_env_steps"][unit] * (cpus if unit == "per_s" else 1), 1) for m in MODES}
    doc["note"] = ("ideal = cpu_count x 1/(1/physics + 1/render) (8 physics steps per render in chunk mode), from "
                   "separate tight loops in one process with one llvmpipe thread; practical = cpu_count x one "
                   "env's interleaved step+render loop. *_per_cpu_s: the same per CPU-second of that process "
                   "(no cpu_count factor), robust to other load on the machine.")
    return doc


def run_env_bench(task_id: str = "mujoco/Reach-v1", env_counts: tuple[int, ...] = (1, 4, 16, 32),
                  image_size: int = 128, seconds: float = 1.5, rounds: int = 4,
                  tune_at: int | None = 16, quiet_budget_s: float = 20.0,
                  out: str | Path | None = "bench/results/env.json") -> dict[str, Any]:
    """Measure env steps/s of every contestant, both modes, each env count; write JSON to ``out``.

    Args:
        seconds: wall time of one sample; ``rounds`` interleaved samples per figure (the best is kept).
        tune_at: also sweep `SubprocVectorEnv`'s worker count / render threads at this env count.
        quiet_budget_s: total time the bench may wait, before samples, for other processes to go quiet.

    Returns:
        The JSON document: ``machine``, ``settings``, ``limit``, ``results[mode][N][contestant]``,
        ``tuning``, ``summary`` (ratios ours/async, ours/limit, ours/sequential per N and mode).
    """
    cpus = os.cpu_count() or 1
    t_start = time.perf_counter()
    doc: dict[str, Any] = {"machine": _machine(cpus), "settings": {
        "task_id": task_id, "image_size": image_size, "chunk": CHUNK, "env_counts": list(env_counts),
        "seconds_per_sample": seconds, "rounds": rounds,
        "unit": "env steps/s = control steps summed over envs per wall-clock second"}}
    quiet = _Quiet(quiet_budget_s)
    quiet.wait()
    limit_runs = [_limit(task_id, image_size, seconds, rounds)]
    results: dict[str, dict[str, Any]] = {m: {} for m in MODES}
    for n in env_counts:
        for mode, row in _contest(task_id, n, image_size, seconds, rounds, quiet).items():
            results[mode][str(n)] = row
    quiet.wait()
    limit_runs.append(_limit(task_id, image_size, seconds, rounds))  # again: the best of both counts
    doc["limit"] = _limit_figures(limit_runs, cpus)
    doc["results"] = results
    doc["tuning"] = _tune(task_id, tune_at, image_size, seconds, rounds, cpus, quiet) if tune_at else []
    doc["summary"] = _summary(results, doc["limit"])
    doc["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["machine"]["waited_for_quiet_s"] = round(quiet.waited, 1)
    doc["wall_s"] = round(time.perf_counter() - t_start, 1)
    if out is not None:
        _write_keeping_others(out, doc)
    return doc


def _write_keeping_others(out: str | Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``out``, keeping the top-level keys of the file's current document that ``doc`` lacks
    (each backend's bench writes its own key: ``libero``, ...)."""
    path = Path(out)
    old = json.loads(path.read_text()) if path.is_file() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**doc, **{k: v for k, v in old.items() if k not in doc}}, indent=2) + "\n")


def _machine(cpus: int) -> dict[str, Any]:
    return {"cpu_count": cpus, "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
            "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS"), "platform": platform.platform(),
            "python": platform.python_version(), "processor": platform.processor() or platform.machine(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            "versions": _versions()}


def _contest(task_id: str, n: int, image_size: int, seconds: float, rounds: int,
             quiet: _Quiet) -> dict[str, dict[str, Any]]:
    """Every contestant at ``n`` envs, both modes, ``rounds`` interleaved samples each -> {mode: {name: best}}."""
    ours = _Ours(task_id, n, image_size)
    seq = _Sequential(task_id, n, image_size)
    ours.reset()
    seq.reset()
    rows: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        asy = _Async(task_id, n, image_size, mode)
        asy.reset()
        runners = {"ours": ours, "async": asy, "sequential": seq}
        samples: dict[str, list[dict[str, float]]] = {k: [] for k in runners}
        for r in range(rounds):
            for name, runner in runners.items():
                samples[name].append(_measure(runner, mode, seconds, seed=r, quiet=quiet))
        asy.close()
        rows[mode] = {name: _best(s) for name, s in samples.items()}
        rows[mode]["ours"].update(num_workers=ours.env.num_workers, render_threads=ours.env.render_threads)
        _log(f"N={n:3d} {mode:5s} " + "  ".join(
            f"{k} {v['env_steps_per_s']:8.1f}" for k, v in rows[mode].items() if isinstance(v, dict)))
    ours.close()
    seq.close()
    return rows


def _tune(task_id: str, n: int, image_size: int, seconds: float, rounds: int, cpus: int,
          quiet: _Quiet) -> list[dict[str, Any]]:
    """Worker count x llvmpipe threads per worker for `SubprocVectorEnv` at ``n`` envs."""
    configs = sorted({(1, cpus), (cpus, 1), (cpus, 2), (2 * cpus, 1)})
    rows = []
    for nw, threads in configs:
        if nw > n:
            continue
        runner = _Ours(task_id, n, image_size, num_workers=nw, render_threads=threads)
        runner.reset()
        row: dict[str, Any] = {"num_workers": nw, "render_threads": threads}
        for mode in MODES:
            row[mode] = _best([_measure(runner, mode, seconds, seed=r, quiet=quiet) for r in range(min(rounds, 2))])
        runner.close()
        _log(f"tune N={n} workers={nw} LP_NUM_THREADS={threads}: step {row['step']['env_steps_per_s']:.1f} "
             f"chunk {row['chunk']['env_steps_per_s']:.1f}")
        rows.append(row)
    return rows


def _summary(results: dict[str, dict[str, Any]], limit: dict[str, Any]) -> dict[str, Any]:
    """Ratios per N and mode, by wall clock and per CPU-second (the latter robust to other load)."""
    out: dict[str, Any] = {}
    for mode, by_n in results.items():
        ideal, practical = limit["ideal_env_steps_per_s"][mode], limit["practical_env_steps_per_s"][mode]
        ideal_cpu = limit["ideal_env_steps_per_cpu_s"][mode]
        practical_cpu = limit["practical_env_steps_per_cpu_s"][mode]
        for n, r in by_n.items():
            o, a, q = r["ours"], r["async"], r["sequential"]
            out.setdefault(n, {})[mode] = {
                "ours_over_async": round(o["env_steps_per_s"] / a["env_steps_per_s"], 3),
                "ours_over_limit": round(o["env_steps_per_s"] / ideal, 3),
                "ours_over_practical_limit": round(o["env_steps_per_s"] / practical, 3),
                "ours_over_sequential": round(o["env_steps_per_s"] / q["env_steps_per_s"], 3),
                "async_over_limit": round(a["env_steps_per_s"] / ideal, 3),
                "ours_over_async_per_cpu_s": round(o["steps_per_cpu_s"] / a["steps_per_cpu_s"], 3),
                "ours_over_limit_per_cpu_s": round(o["steps_per_cpu_s"] / ideal_cpu, 3),
                "ours_over_practical_limit_per_cpu_s": round(o["steps_per_cpu_s"] / practical_cpu, 3),
                "others_cores_during_ours_async": [o["others_cores"], a["others_cores"]],
            }
    if "16" in out:
        out["targets_at_16"] = {
            mode: {"ours_over_async>=1.5": out["16"][mode]["ours_over_async"] >= 1.5,
                   "ours_over_limit>=0.7": out["16"][mode]["ours_over_limit"] >= 0.7,
                   "per_cpu_s: ours_over_async>=1.5": out["16"][mode]["ours_over_async_per_cpu_s"] >= 1.5,
                   "per_cpu_s: ours_over_limit>=0.7": out["16"][mode]["ours_over_limit_per_cpu_s"] >= 0.7}
            for mode in MODES if mode in out["16"]}
    return out


def _versions() -> dict[str, str]:
    from importlib.metadata import version  # not `import mujoco`: that would fix its GL backend here

    return {p: version(p) for p in ("mujoco", "gymnasium", "numpy")}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class BenchEnvConfig(Config):
    """`vla-rl bench env`: vector-env steps/s vs AsyncVectorEnv, a sequential loop and the limit."""

    task_id: str = "mujoco/Reach-v1"
    env_counts: tuple[int, ...] = (1, 4, 16, 32)
    image_size: int = Field(128, ge=16)
    seconds: float = Field(1.5, gt=0, description="wall time of one sample")
    rounds: int = Field(4, ge=1, description="interleaved samples per figure; the best is kept")
    tune_at: int | None = Field(16, description="sweep workers / render threads at this env count (null: skip)")
    quiet_budget_s: float = Field(20.0, ge=0, description="seconds to wait in all for a quiet machine")
    out: str = "bench/results/env.json"


# Other backends' rows (`--backend <name>`), each its own bench module's `main(argv)`: "module:function".
BACKENDS = {
    "libero": "bench.libero_env_bench:main",
    "maniskill": "bench.maniskill_env_bench:main",
}


def _backend(argv: list[str]) -> tuple[str, list[str]]:
    """(the ``--backend`` / ``backend=`` asked for, default mujoco; the other arguments)."""
    rest, backend, i = [], "mujoco", 0
    while i < len(argv):
        a = argv[i]
        if a in ("--backend", "-b") and i + 1 < len(argv):
            backend, i = argv[i + 1], i + 2
            continue
        if a.startswith(("--backend=", "backend=")):
            backend = a.split("=", 1)[1]
        else:
            rest.append(a)
        i += 1
    if backend != "mujoco" and backend not in BACKENDS:
        raise SystemExit(f"vla-rl bench env: unknown backend {backend!r}; valid: mujoco, {', '.join(BACKENDS)}")
    return backend, rest


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import parse_args
    from vla_rl.registry import resolve_entry_point

    backend, argv = _backend(list(sys.argv[1:] if argv is None else argv))
    if backend != "mujoco":
        resolve_entry_point(BACKENDS[backend])(argv)
        return
    cfg = parse_args(BenchEnvConfig, argv, "bench env")
    doc = run_env_bench(**cfg.model_dump())
    print(json.dumps({"limit": doc["limit"]["ideal_env_steps_per_s"], "summary": doc["summary"]}, indent=2))


if __name__ == "__main__":
    main()
