"""`SubprocVectorEnv`: N envs in worker processes, images in shared memory.

Implements the `vla_rl.envs.VectorEnv` contract over any envs with the MuJoCo arm env's rendering surface
(`render_into`, `proprio`, `cameras`, `image_size`, `max_steps`). Built from picklable env factories, as Gymnasium's
``AsyncVectorEnv(env_fns)``: it knows nothing of tasks or registries. Layout:

* ``num_workers`` processes (``spawn`` or ``forkserver``; never ``fork``, so no MuJoCo/EGL state is
  inherited), worker ``w`` holding the contiguous env slice ``[lo_w, hi_w)``; the envs are built inside
  the worker by calling their factories.
* Shared memory: one ``uint8 (N, H, W, 3)`` block per camera and one ``float32 (N, D)`` state block.
  Workers render straight into their rows (`ArmEnv.render_into`); the parent copies the rows out.
* A `multiprocessing.Pipe` per worker carries commands and the small per-env results
  (reward, terminated, truncated, success, steps, instruction).

Fault tolerance: the parent waits for every worker with a deadline (``step_timeout_s``). A worker that
dies or misses the deadline is killed and restarted (fresh process, fresh envs, same shared memory);
every env it held reports ``info["lost"] = True`` and ``truncated = True`` for that call, and keeps
doing so (without stepping) until the next `reset`. Workers exit by themselves when the parent dies
(pipe EOF, parent-pid polling); `close` (also run on garbage collection and at interpreter exit)
stops them and unlinks the shared memory.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as mp_wait
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from vla_rl.envs import StepResult, check_actions
from vla_rl.envs.sharded import ShardedVectorEnv

logger = logging.getLogger(__name__)

_POLL_S = 1.0  # how often an idle worker checks that its parent is still alive


# ---- worker side -----------------------------------------------------------------------------


def _parent_alive(parent_pid: int, start_ppid: int) -> bool:
    if os.getppid() != start_ppid:  # re-parented: our direct parent (the env or the forkserver) died
        return False
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _worker_main(conn: Connection, parent_pid: int, env_fns: list[Callable[[], Any]], lo: int, hi: int,
                 render_threads: int | None) -> None:
    """Worker process: build envs ``[lo, hi)`` from their factories ``env_fns``, then serve commands until
    ``close`` or parent death."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes us
    if render_threads is not None:  # llvmpipe reads this when the first GL context is made
        os.environ["LP_NUM_THREADS"] = str(render_threads)
    start_ppid = os.getppid()
    envs: list[Any] = []
    try:
        envs = [fn() for fn in env_fns]
        conn.send((0, "ok", _env_layout(envs[0])))
        local = _LocalEnvs(envs, lo, hi)
        while True:
            while not conn.poll(_POLL_S):
                if not _parent_alive(parent_pid, start_ppid):
                    return
            seq, cmd, payload = conn.recv()
            if cmd == "close":
                return
            try:
                conn.send((seq, "ok", local.serve(cmd, payload)))
            except Exception as exc:  # report, stay alive: the parent raises it
                conn.send((seq, "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    except (EOFError, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):  # the parent went away
        return
    except Exception as exc:  # env construction failed: tell the parent why, then exit
        with contextlib.suppress(OSError):
            conn.send((0, "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    finally:
        for env in envs:
            with contextlib.suppress(Exception):
                env.close()  # free GL contexts now, not in interpreter teardown
        conn.close()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # skip teardown: shared-memory views and EGL finalisers need no cleanup here


def _env_layout(env: Any) -> dict[str, Any]:
    """What the parent needs to size the shared memory and describe the envs."""
    return {"cameras": tuple(env.cameras), "image_size": int(env.image_size),
            "state_dim": int(env.observation_space["state"].shape[0]),
            "observation_space": env.observation_space, "action_space": env.action_space,
            "max_steps": int(env.max_steps)}


class _LocalEnvs:
    """A worker's envs ``[lo, hi)`` and its views of the shared image and state rows; serves one command."""

    def __init__(self, envs: list[Any], lo: int, hi: int) -> None:
        self.envs, self.lo, self.hi = envs, lo, hi
        self.images: dict[str, np.ndarray] = {}
        self.state: np.ndarray | None = None
        self.shms: list[SharedMemory] = []

    def serve(self, cmd: str, payload: Any) -> Any:
        if cmd == "attach":
            return self.attach(payload)
        if cmd == "reset":
            return self.reset(payload)
        if cmd == "step":
            return _worker_step(self.envs, self.images, self.state, *payload)
        if cmd == "call":
            return self.call(*payload)
        raise ValueError(f"unknown command {cmd!r}")

    def attach(self, payload: dict[str, Any]) -> None:
        # The parent owns (and unlinks) the blocks. Attaching registers the name with the
        # resource tracker the parent shares with us; that set-add is a no-op.
        n, size, d = payload["num_envs"], payload["image_size"], payload["state_dim"]
        for cam, name in payload["images"].items():
            self.shms.append(SharedMemory(name=name))
            self.images[cam] = np.ndarray((n, size, size, 3), np.uint8, buffer=self.shms[-1].buf)[self.lo:self.hi]
        self.shms.append(SharedMemory(name=payload["state"]))
        self.state = np.ndarray((n, d), np.float32, buffer=self.shms[-1].buf)[self.lo:self.hi]

    def reset(self, seeds: list[int | None]) -> list[str]:
        instructions = []
        for i, (env, seed) in enumerate(zip(self.envs, seeds, strict=True)):
            obs, info = env.reset(seed=seed)
            for cam in self.images:
                self.images[cam][i] = obs[cam]
            self.state[i] = obs["state"]
            instructions.append(info["instruction"])
        return instructions

    def call(self, name: str, args: tuple, kwargs: dict[str, Any], local: list[int]) -> list[Any]:
        out = []
        for i in local:
            attr = getattr(self.envs[i], name)
            out.append(attr(*args, **kwargs) if callable(attr) else attr)
        return out


def _worker_step(envs: list[Any], images: dict[str, np.ndarray], state: np.ndarray, actions: np.ndarray,
                 active: np.ndarray) -> tuple[np.ndarray, ...]:
    """Step the active local envs through ``actions (n, T, 7)``; render those that moved, once."""
    n = len(envs)
    reward = np.zeros(n, np.float32)
    terminated = np.zeros(n, bool)
    truncated = np.zeros(n, bool)
    success = np.zeros(n, bool)
    steps = np.zeros(n, np.int64)
    view = {cam: None for cam in images}
    for i in np.flatnonzero(active):
        env = envs[i]
        _, r, term, trunc, info = env.step_chunk(actions[i], render=False)
        reward[i], terminated[i], truncated[i] = r, term, trunc
        success[i], steps[i] = info["success"], info["steps"]
        if steps[i]:
            for cam in images:
                view[cam] = images[cam][i]
            env.render_into(view)
            state[i] = env.proprio()
    return reward, terminated, truncated, success, steps


# ---- parent side -----------------------------------------------------------------------------


@dataclass
class _Worker:
    proc: Any  # multiprocessing.Process (context-specific class)
    conn: Connection
    lo: int
    hi: int
    seq: int = 0  # sequence number of the reply awaited (0: the start-up report)


@dataclass
class _PendingStep:
    """A `step_chunk_async` call in flight: its messages, the workers reached / failed, the envs run."""

    msgs: dict[int, tuple[str, Any]]
    sent: list[int]
    failed: dict[int, str]
    run: np.ndarray


@dataclass
class _Resources:
    """Everything `close` must release; held apart from the env so a finalizer can reach it."""

    workers: list[_Worker | None] = field(default_factory=list)
    shms: list[SharedMemory] = field(default_factory=list)
    views: list[np.ndarray] = field(default_factory=list)


def _shutdown(res: _Resources) -> None:
    """Stop every worker (politely, then SIGKILL) and unlink the shared memory. Idempotent."""
    workers = [w for w in res.workers if w is not None]
    for w in workers:
        with contextlib.suppress(OSError):
            w.conn.send((-1, "close", None))
    deadline = time.monotonic() + 3.0
    for w in workers:
        w.proc.join(max(0.0, deadline - time.monotonic()))
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join(5.0)
        w.conn.close()
    res.workers.clear()
    res.views.clear()  # release the exported buffers before closing the mappings
    for shm in res.shms:
        with contextlib.suppress(BufferError):  # a view still referenced elsewhere: unmapped at exit
            shm.close()
        with contextlib.suppress(FileNotFoundError):
            shm.unlink()
    res.shms.clear()


class SubprocVectorEnv(ShardedVectorEnv):
    """``len(env_fns)`` envs in ``num_workers`` processes (see the module docstring).

    Args:
        env_fns: one picklable factory per env (N of them), called in the worker that holds the env, e.g.
            ``functools.partial(vla_rl.envs.make_env, "mujoco/Reach-v1", image_size=64)``.
        num_workers: processes; default ``min(num_envs, os.cpu_count())``. Each holds a contiguous slice.
        step_timeout_s: deadline for one worker to answer a reset/step/call.
        start_method: ``"spawn"`` or ``"forkserver"``.
        render_threads: ``LP_NUM_THREADS`` set in each worker (Mesa llvmpipe's CPU render threads; no effect
            on a GPU). Default: the parent's ``LP_NUM_THREADS`` if set, else ``max(1, cpu_count // num_workers)``
            so the workers do not oversubscribe the cores (`bench.env_bench` measures the alternatives).
        start_timeout_s: deadline for a (re)started worker to build its envs.
        name: what the envs are (a task id), for error messages.

    Attributes:
        num_envs, num_workers, camera_names, image_size, state_dim, max_steps, single_observation_space,
        single_action_space, worker_pids.
        restarts: how many workers were restarted after a crash or a timeout.
    """

    def __init__(self, env_fns: Sequence[Callable[[], Any]], num_workers: int | None = None,
                 step_timeout_s: float = 30.0, start_method: str = "spawn", render_threads: int | None = None,
                 start_timeout_s: float = 120.0, name: str = "") -> None:
        num_envs = len(env_fns)
        if num_envs < 1:
            raise ValueError(f"env_fns must hold at least one env factory, got {num_envs}")
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(f"start_method must be 'spawn' or 'forkserver' (fork is unsafe with EGL), "
                             f"got {start_method!r}")
        cpus = os.cpu_count() or 1
        num_workers = min(num_envs, cpus) if num_workers is None else num_workers
        if not 1 <= num_workers <= num_envs:
            raise ValueError(f"num_workers must be in [1, num_envs={num_envs}], got {num_workers}")
        self.name = name
        self.num_envs = num_envs
        self.num_workers = num_workers
        self.env_fns = list(env_fns)
        self.step_timeout_s = float(step_timeout_s)
        self.start_timeout_s = float(start_timeout_s)
        if render_threads is None and "LP_NUM_THREADS" not in os.environ:
            render_threads = max(1, cpus // num_workers)
        self.render_threads = render_threads
        self.restarts = 0
        self._seq = 0
        self._ctx = mp.get_context(start_method)
        bounds = np.linspace(0, num_envs, num_workers + 1).round().astype(int)
        self._slices = [(int(bounds[w]), int(bounds[w + 1])) for w in range(num_workers)]
        self._res = _Resources(workers=[None] * num_workers)
        self._finalizer = weakref.finalize(self, _shutdown, self._res)
        self._lost = np.zeros(num_envs, bool)
        self._needs_reset = np.ones(num_envs, bool)
        self._in_flight: set[int] = set()  # workers with a step_chunk_async outstanding
        self._instructions = [""] * num_envs
        self._images: dict[str, np.ndarray] = {}
        self._state = np.empty((num_envs, 0), np.float32)
        self._shm_names: dict[str, Any] = {}
        try:
            spec = self._start(list(range(num_workers)))
            self._create_shm(spec)
            self._attach(list(range(num_workers)))
        except BaseException:
            self.close()
            raise

    # ---- public API ------------------------------------------------------------------------
    @property
    def worker_pids(self) -> list[int]:
        """Process id of each worker, in slice order."""
        return [w.proc.pid for w in self._res.workers]

    def _reset_message(self, seeds: list[int | None]) -> tuple[str, Any]:
        return "reset", seeds

    def _take_reset(self, w: int, reply: list[str]) -> None:
        """A worker rendered its envs' first observation into shared memory; it replies their instructions."""
        lo, hi = self._slices[w]
        self._instructions[lo:hi] = reply

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """One control step per active env; ``actions float32 (N, 7)``; renders every stepped env.

        Returns ``(obs, reward float32 (N,), terminated bool (N,), truncated bool (N,), info)``.
        """
        a = check_actions(actions, (self.num_envs,))
        return self._step(a[:, None, :], active)

    def step_chunk(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """``T`` control steps per active env (``actions float32 (N, T, 7)``), rendering once at the end.

        An env stops early at success or its step limit; ``info["steps"]`` counts the steps executed.
        """
        return self._step(self._chunk(actions), active)

    def step_chunk_async(self, actions: np.ndarray, active: np.ndarray) -> _PendingStep:
        """Start `step_chunk` for the ``active`` envs and return at once; `step_wait` collects it.

        Several calls may be in flight if their envs live on different workers (e.g. the two halves of
        a pipelined rollout: one half simulates while the policy infers for the other). In the result,
        only the rows of this call's envs are meaningful.
        """
        a = self._chunk(actions)
        run = self._runnable(active)
        workers = [w for w, (lo, hi) in enumerate(self._slices) if run[lo:hi].any()]
        busy = set(workers) & self._in_flight
        if busy:
            raise RuntimeError(f"workers {sorted(busy)} already have a step in flight; step_wait() it first")
        msgs = {w: ("step", (a[lo:hi], run[lo:hi])) for w, (lo, hi) in enumerate(self._slices) if w in workers}
        sent, failed = self._dispatch(msgs)
        self._in_flight |= set(sent)
        return _PendingStep(msgs, sent, failed, run)

    def step_wait(self, pending: _PendingStep) -> StepResult:
        """Finish a `step_chunk_async` call (same return as `step_chunk`)."""
        try:
            replies = self._complete(pending.msgs, pending.sent, pending.failed)
        finally:
            self._in_flight -= set(pending.sent)
        return self._result(replies, rows=pending.run | self._lost)

    def close(self) -> None:
        """Stop every worker and unlink the shared memory (safe to call twice)."""
        self._images = {}
        self._state = np.empty((self.num_envs, 0), np.float32)
        self._finalizer()

    # ---- internals -------------------------------------------------------------------------
    def _step(self, actions: np.ndarray, active: np.ndarray | None) -> StepResult:
        """``actions float32 (N, T, 7)``, already validated."""
        run = self._runnable(active)
        msgs = {}
        for w, (lo, hi) in enumerate(self._slices):
            if run[lo:hi].any():
                msgs[w] = ("step", (actions[lo:hi], run[lo:hi]))
        return self._result(self._roundtrip(msgs))

    def _result(self, replies: dict[int, Any], rows: np.ndarray | None = None) -> StepResult:
        """Assemble a step's return from the workers' replies; ``rows`` (bool (N,)) limits the
        observation copy to those envs (others are zero)."""
        n = self.num_envs
        reward = np.zeros(n, np.float32)
        terminated = np.zeros(n, bool)
        truncated = np.zeros(n, bool)
        success = np.zeros(n, bool)
        steps = np.zeros(n, np.int64)
        for w, (r, te, tr, su, st) in replies.items():
            lo, hi = self._slices[w]
            reward[lo:hi], terminated[lo:hi], truncated[lo:hi], success[lo:hi], steps[lo:hi] = r, te, tr, su, st
        lost = self._lost.copy()
        truncated |= lost
        info = {"instruction": list(self._instructions), "success": success, "lost": lost, "steps": steps}
        return self._copy_obs(rows), reward, terminated, truncated, info

    def _roundtrip(self, msgs: dict[int, tuple[str, Any]]) -> dict[int, Any]:
        """Send ``msgs`` (worker -> command), gather replies under the deadline. Workers that die or
        time out are restarted and their envs marked lost; they are absent from the returned dict.
        A command that raised inside a worker is re-raised here (after every reply is in)."""
        if self._in_flight:
            raise RuntimeError("a step_chunk_async() is in flight; step_wait() it first")
        sent, failed = self._dispatch(msgs)
        return self._complete(msgs, sent, failed)

    def _dispatch(self, msgs: dict[int, tuple[str, Any]]) -> tuple[list[int], dict[int, str]]:
        """Send each worker its command; returns the workers reached and the unreachable ones."""
        if not self._finalizer.alive:
            raise RuntimeError("SubprocVectorEnv is closed")
        sent = []
        failed: dict[int, str] = {}
        for w, (cmd, payload) in msgs.items():
            try:
                self._send(w, cmd, payload)
                sent.append(w)
            except OSError as exc:
                failed[w] = f"unreachable ({exc})"
        return sent, failed

    def _complete(self, msgs: dict[int, tuple[str, Any]], sent: list[int], failed: dict[int, str]) -> dict[int, Any]:
        """Gather the replies of ``sent`` under the deadline; restart failures; re-raise worker errors."""
        failed = dict(failed)
        replies, more = self._gather(sent, self.step_timeout_s)
        failed.update(more)
        if failed:
            self._restart(failed)
        errors = {w: r[1] for w, r in replies.items() if r[0] == "error"}
        if errors:
            w, tb = next(iter(errors.items()))
            raise RuntimeError(f"{msgs[w][0]!r} failed in worker {w} (envs {self._slices[w]}):\n{tb}")
        return {w: r[1] for w, r in replies.items()}

    def _gather(self, workers: list[int], timeout_s: float) -> tuple[dict[int, tuple[str, Any]], dict[int, str]]:
        """Wait for one reply from each of ``workers``; returns (replies, failures with a reason)."""
        deadline = time.monotonic() + timeout_s
        pending = {w: self._res.workers[w] for w in workers}
        replies: dict[int, tuple[str, Any]] = {}
        failed: dict[int, str] = {}
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            owner: dict[Any, int] = {}
            for w, wk in pending.items():
                owner[wk.conn] = w
                owner[wk.proc.sentinel] = w
            for obj in mp_wait(list(owner), timeout=remaining):
                w = owner[obj]
                wk = pending.get(w)
                if wk is None:
                    continue
                try:
                    if wk.conn.poll():
                        seq, *reply = wk.conn.recv()
                        if seq == wk.seq:
                            replies[w] = tuple(reply)
                            del pending[w]
                        continue  # else: a stale reply to an interrupted command; keep waiting
                except (EOFError, OSError):
                    pass
                if not wk.proc.is_alive() or obj is wk.conn:  # exited, or pipe closed/broken
                    wk.proc.join(0.1)
                    failed[w] = f"died (exit code {wk.proc.exitcode})"
                    del pending[w]
        for w in pending:
            failed[w] = f"did not answer within {timeout_s:.1f} s"
        return replies, failed

    def _send(self, w: int, cmd: str, payload: Any) -> None:
        """Send one command; the worker's reply must carry the same sequence number."""
        self._seq += 1
        wk = self._res.workers[w]
        wk.seq = self._seq
        wk.conn.send((self._seq, cmd, payload))

    def _spawn(self, w: int) -> None:
        lo, hi = self._slices[w]
        parent_conn, child_conn = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main, name=f"SubprocVectorEnv-{w}", daemon=True,
            args=(child_conn, os.getpid(), self.env_fns[lo:hi], lo, hi, self.render_threads),
        )
        proc.start()
        child_conn.close()  # so the parent sees EOF when the worker dies
        self._res.workers[w] = _Worker(proc, parent_conn, lo, hi)

    def _start(self, ws: list[int]) -> dict[str, Any]:
        """Start workers ``ws`` and wait until their envs are built; returns the env spec."""
        for w in ws:
            self._spawn(w)
        replies, failed = self._gather(ws, self.start_timeout_s)
        errors = [f"worker {w}: {r[1]}" for w, r in replies.items() if r[0] == "error"]
        errors += [f"worker {w} {why}" for w, why in failed.items()]
        if errors:
            raise RuntimeError(f"could not start env workers for {self.name or 'the envs'}:\n" + "\n".join(errors))
        specs = [replies[w][1] for w in ws]
        return specs[0]

    def _create_shm(self, spec: dict[str, Any]) -> None:
        self.camera_names: tuple[str, ...] = spec["cameras"]
        self.image_size: int = spec["image_size"]
        self.state_dim: int = spec["state_dim"]
        self.max_steps: int = spec["max_steps"]
        self.single_observation_space = spec["observation_space"]
        self.single_action_space = spec["action_space"]
        n, s = self.num_envs, self.image_size
        names: dict[str, str] = {}
        for cam in self.camera_names:
            shm = SharedMemory(create=True, size=n * s * s * 3)
            self._res.shms.append(shm)
            self._images[cam] = np.ndarray((n, s, s, 3), np.uint8, buffer=shm.buf)
            self._images[cam].fill(0)
            names[cam] = shm.name
        shm = SharedMemory(create=True, size=max(1, n * self.state_dim * 4))
        self._res.shms.append(shm)
        self._state = np.ndarray((n, self.state_dim), np.float32, buffer=shm.buf)
        self._state.fill(0)
        self._res.views.extend([*self._images.values(), self._state])
        self._shm_names = {"images": names, "state": shm.name, "num_envs": n, "image_size": s,
                           "state_dim": self.state_dim}

    def _attach(self, ws: list[int]) -> None:
        for w in ws:
            self._send(w, "attach", self._shm_names)
        replies, failed = self._gather(ws, self.start_timeout_s)
        errors = [f"worker {w}: {r[1]}" for w, r in replies.items() if r[0] == "error"]
        errors += [f"worker {w} {why}" for w, why in failed.items()]
        if errors:
            raise RuntimeError("env workers could not attach shared memory:\n" + "\n".join(errors))

    def _restart(self, failed: dict[int, str]) -> None:
        """Kill and restart the ``failed`` workers (worker -> reason); mark their envs lost."""
        for w, why in failed.items():
            wk = self._res.workers[w]
            self.restarts += 1
            logger.warning("SubprocVectorEnv worker %d (pid %s, envs %d..%d) %s; restarting it (restart #%d); "
                           "its episodes are void until the next reset", w, wk.proc.pid, wk.lo, wk.hi - 1, why,
                           self.restarts)
            if wk.proc.is_alive():
                wk.proc.kill()
            wk.proc.join(5.0)
            wk.conn.close()
            self._lost[wk.lo:wk.hi] = True
            self._needs_reset[wk.lo:wk.hi] = True
        ws = list(failed)
        self._start(ws)
        self._attach(ws)
