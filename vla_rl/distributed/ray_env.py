"""`RayVectorEnv`: the vector-env contract (`vla_rl.envs.VectorEnv`) over Ray actors, so env workers can run on
other machines.

It mirrors `sims.vector.SubprocVectorEnv` (same slices, same results for the same seeds and actions, same fault
semantics), with a Ray actor in place of each worker process:

* ``num_workers`` actors (`EnvShard`), actor ``w`` building the contiguous env slice ``[lo_w, hi_w)`` from the
  envs' picklable factories. Each asks for ``actor_cpus`` CPUs and the custom ``resources`` (which node types
  may hold it); ``actor_options`` adds any other `ray.actor.ActorClass.options` (a scheduling strategy).
* Every call fans out to the actors holding the envs concerned and waits for them under one deadline,
  ``step_timeout_s``. Observations come back through the object store: a step returns only the rows that moved.
* An actor that dies (killed, out of memory, its node lost) or misses the deadline (hung) is killed and replaced
  by a fresh one (fresh envs, the same resource request: on another node when its own is gone). Every env it
  held reports ``info["lost"] = True`` and ``truncated = True`` for that call and keeps doing so, without
  stepping, until the next `reset`; ``restarts`` counts the replacements. `vla_rl.rollout.episodes.run_waves`
  re-runs the episodes so lost.
* Memory: every reply carries the actor's resident set size (RSS, MB; `rss_mb`). With ``memory_mb`` set, each actor
  asks Ray for that much memory (``memory=``, so the scheduler places it where it fits) and an actor whose RSS
  passes it is replaced as a failed one (its reply dropped, its envs lost), before the node's OOM killer picks a
  process itself. `memory_stats` gives the largest RSS and the cluster's object-store use for the metrics.

The envs must have the rendering surface `SubprocVectorEnv` needs (the MuJoCo arm env's): ``reset(seed=)``,
``step_chunk(actions, render=False)``, ``render_into``, ``proprio()``, ``cameras``, ``image_size``,
``max_steps``, ``observation_space``, ``action_space``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_rl.envs import StepResult, check_actions
from vla_rl.envs.sharded import ShardedVectorEnv

logger = logging.getLogger(__name__)

# Set in each actor before its envs are built, from the driver's environment: how MuJoCo renders.
_GL_VARS = ("MUJOCO_GL", "PYOPENGL_PLATFORM")
MEMORY_SETTING = "distributed.actor_memory_mb"  # the config key of ``memory_mb``, named in its warnings


def rss_mb(pid: int | str = "self") -> float | None:
    """Resident set size of process ``pid`` in MB (2**20 bytes), from ``/proc/<pid>/statm``; None where there is
    no /proc (not Linux) or the process is gone."""
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def object_store_used_mb(ray: Any) -> float | None:
    """Bytes held in the Ray object store, summed over the cluster's nodes, in MB; None if Ray cannot say.

    Asks a raylet for the cluster's store stats (what ``ray memory --stats-only`` prints); Ray's public resources
    (``available_resources()["object_store_memory"]``) give the store's capacity, not its use."""
    try:
        from ray._private.internal_api import get_memory_info_reply, get_state_from_address

        reply = get_memory_info_reply(get_state_from_address(ray.get_runtime_context().gcs_address),
                                      timeout_seconds=10.0)
        return reply.store_stats.object_store_bytes_used / 2**20
    except Exception as exc:  # a private API: a Ray upgrade may move it; the metric is then left out
        logger.debug("object-store use unavailable: %s", exc)
        return None


class EnvShard:
    """One actor's envs (built from ``env_fns`` in the actor) and their latest observations.

    Runs inside a Ray actor (`RayVectorEnv` wraps it with ``ray.remote``); a plain object otherwise. Shapes: n envs,
    images uint8 (n, H, W, 3) per camera, state float32 (n, D).
    """

    def __init__(self, env_fns: list[Callable[[], Any]], env_vars: dict[str, str]) -> None:
        os.environ.update(env_vars)  # before the first GL context: LP_NUM_THREADS, MUJOCO_GL
        self.envs = [fn() for fn in env_fns]
        env = self.envs[0]
        n, size = len(self.envs), int(env.image_size)
        self.images = {c: np.zeros((n, size, size, 3), np.uint8) for c in env.cameras}
        self.state = np.zeros((n, int(env.observation_space["state"].shape[0])), np.float32)

    def serve(self, method: str, args: tuple) -> tuple[Any, float | None]:
        """``(getattr(self, method)(*args), this process's RSS in MB after it)``: how the driver calls every method,
        so each reply carries the actor's memory at no extra round trip."""
        return getattr(self, method)(*args), rss_mb()

    def layout(self) -> dict[str, Any]:
        """What the driver needs to describe the envs, and where this actor runs (pid, node id)."""
        import ray

        env = self.envs[0]
        return {"cameras": tuple(env.cameras), "image_size": int(env.image_size), "state_dim": self.state.shape[1],
                "observation_space": env.observation_space, "action_space": env.action_space,
                "max_steps": int(env.max_steps), "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id() if ray.is_initialized() else None}

    def reset(self, seeds: list[int | None]) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
        """Reset every env; returns (images per camera, state, instructions)."""
        instructions = []
        for i, (env, seed) in enumerate(zip(self.envs, seeds, strict=True)):
            obs, info = env.reset(seed=seed)
            for cam in self.images:
                self.images[cam][i] = obs[cam]
            self.state[i] = obs["state"]
            instructions.append(info["instruction"])
        return self.images, self.state, instructions

    def step(self, actions: np.ndarray, active: np.ndarray) -> tuple[Any, ...]:
        """Step the ``active`` envs through ``actions`` float32 (n, T, 7); render those that moved, once.

        Returns (moved int (M,), their images per camera (M, H, W, 3), their state (M, D), reward float32 (n,),
        terminated, truncated, success bool (n,), steps int64 (n,)).
        """
        n = len(self.envs)
        reward, steps = np.zeros(n, np.float32), np.zeros(n, np.int64)
        terminated, truncated, success = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
        for i in np.flatnonzero(active):
            env = self.envs[i]
            _, reward[i], terminated[i], truncated[i], info = env.step_chunk(actions[i], render=False)
            success[i], steps[i] = info["success"], info["steps"]
            if steps[i]:
                env.render_into({cam: img[i] for cam, img in self.images.items()})
                self.state[i] = env.proprio()
        moved = np.flatnonzero(steps)
        images = {cam: img[moved] for cam, img in self.images.items()}
        return moved, images, self.state[moved], reward, terminated, truncated, success, steps

    def call(self, name: str, args: tuple, kwargs: dict[str, Any], local: list[int]) -> list[Any]:
        """``getattr(env, name)(*args, **kwargs)`` (or the attribute) on local envs ``local``."""
        out = []
        for i in local:
            attr = getattr(self.envs[i], name)
            out.append(attr(*args, **kwargs) if callable(attr) else attr)
        return out

    def close(self) -> None:
        for env in self.envs:
            with contextlib.suppress(Exception):
                env.close()


@dataclass
class _PendingStep:
    """A `step_chunk_async` call in flight: the object refs per actor and the envs run."""

    refs: dict[int, Any]
    run: np.ndarray


def _kill_all(ray: Any, actors: list[Any]) -> None:
    """Kill every actor (the finalizer of `RayVectorEnv`); idempotent."""
    for a in actors:
        if a is not None:
            with contextlib.suppress(Exception):
                ray.kill(a, no_restart=True)
    actors.clear()


class RayVectorEnv(ShardedVectorEnv):
    """``len(env_fns)`` envs in ``num_workers`` Ray actors (see the module docstring).

    Args:
        env_fns: one picklable factory per env (N of them), called in the actor that holds the env.
        num_workers: actors; default ``min(num_envs, os.cpu_count())``. Each holds a contiguous slice.
        step_timeout_s: deadline for the actors to answer one reset/step/call.
        name: what the envs are (a task id), for error messages.
        address: the Ray cluster to join when this driver is not connected yet (None: start one here).
        actor_cpus: CPUs each actor asks for (may be fractional).
        resources: custom resources each actor asks for (e.g. ``{"env_node": 0.01}`` keeps actors on the nodes
            that advertise ``env_node``).
        actor_options: further ``.options()`` of each actor (e.g. a ``scheduling_strategy``).
        render_threads: ``LP_NUM_THREADS`` in each actor (llvmpipe's render threads); default
            ``max(1, int(actor_cpus))``.
        start_timeout_s: deadline for a (re)started actor to be placed and build its envs.
        memory_mb: RSS bound of each actor in MB (None: no bound). Asked of Ray as the actor's ``memory`` resource;
            an actor whose RSS passes it is replaced and its envs report lost (a warning names
            ``distributed.actor_memory_mb``); one past it right after building its envs is an error.

    Attributes:
        num_envs, num_workers, camera_names, image_size, state_dim, max_steps, single_observation_space,
        single_action_space, worker_pids, node_ids.
        restarts: how many actors were replaced after dying, missing the deadline or passing ``memory_mb``.
        rss_mb: each actor's RSS in MB at its latest reply (None before one), in slice order.
    """

    def __init__(self, env_fns: Sequence[Callable[[], Any]], num_workers: int | None = None,
                 step_timeout_s: float = 30.0, name: str = "", *, address: str | None = None,
                 actor_cpus: float = 1.0, resources: dict[str, float] | None = None,
                 actor_options: dict[str, Any] | None = None, render_threads: int | None = None,
                 start_timeout_s: float = 120.0, memory_mb: int | None = None) -> None:
        from vla_rl.distributed.cluster import connect

        num_envs = len(env_fns)
        if num_envs < 1:
            raise ValueError(f"env_fns must hold at least one env factory, got {num_envs}")
        num_workers = min(num_envs, os.cpu_count() or 1) if num_workers is None else num_workers
        if not 1 <= num_workers <= num_envs:
            raise ValueError(f"num_workers must be in [1, num_envs={num_envs}], got {num_workers}")
        self._ray = connect(address)
        self.name, self.num_envs, self.num_workers = name, num_envs, num_workers
        self.env_fns = list(env_fns)
        self.step_timeout_s, self.start_timeout_s = float(step_timeout_s), float(start_timeout_s)
        self.restarts = 0
        if memory_mb is not None and memory_mb <= 0:
            raise ValueError(f"memory_mb must be positive (MB), got {memory_mb}")
        self.memory_mb = memory_mb
        self.rss_mb: list[float | None] = [None] * num_workers
        env_vars = {k: os.environ[k] for k in _GL_VARS if k in os.environ}
        env_vars["LP_NUM_THREADS"] = str(render_threads or max(1, int(actor_cpus)))
        self._env_vars = env_vars
        memory = {} if memory_mb is None else {"memory": memory_mb * 2**20}  # bytes; the scheduler reserves them
        self._actor_cls = self._ray.remote(EnvShard).options(
            num_cpus=actor_cpus, resources=resources or {}, max_restarts=0, **memory, **(actor_options or {}))
        bounds = np.linspace(0, num_envs, num_workers + 1).round().astype(int)
        self._slices = [(int(bounds[w]), int(bounds[w + 1])) for w in range(num_workers)]
        self._actors: list[Any] = [None] * num_workers
        self._finalizer = weakref.finalize(self, _kill_all, self._ray, self._actors)
        self._where: list[dict[str, Any]] = [{}] * num_workers
        self._lost = np.zeros(num_envs, bool)
        self._needs_reset = np.ones(num_envs, bool)
        self._in_flight: set[int] = set()
        self._instructions = [""] * num_envs
        try:
            spec = self._start(list(range(num_workers)))
        except BaseException:
            self.close()
            raise
        self.camera_names: tuple[str, ...] = spec["cameras"]
        self.image_size: int = spec["image_size"]
        self.state_dim: int = spec["state_dim"]
        self.max_steps: int = spec["max_steps"]
        self.single_observation_space = spec["observation_space"]
        self.single_action_space = spec["action_space"]
        s = self.image_size
        self._images = {c: np.zeros((num_envs, s, s, 3), np.uint8) for c in self.camera_names}
        self._state = np.zeros((num_envs, self.state_dim), np.float32)

    # ---- public API ------------------------------------------------------------------------
    @property
    def worker_pids(self) -> list[int]:
        """Process id of each actor, in slice order (on the node that holds it)."""
        return [w["pid"] for w in self._where]

    @property
    def node_ids(self) -> list[str]:
        """Ray node id of each actor, in slice order."""
        return [w["node_id"] for w in self._where]

    @property
    def actors(self) -> list[Any]:
        """The actor handles, in slice order (fault-injection tests kill them)."""
        return list(self._actors)

    def memory_stats(self) -> dict[str, float]:
        """``env_actor_rss_mb_max``: the largest actor RSS at its latest reply (MB); ``object_store_used_mb``: the
        cluster's object-store use now (MB). Each only when known."""
        out = {}
        rss = [r for r in self.rss_mb if r is not None]
        if rss:
            out["env_actor_rss_mb_max"] = max(rss)
        used = object_store_used_mb(self._ray)
        if used is not None:
            out["object_store_used_mb"] = used
        return out

    def _reset_message(self, seeds: list[int | None]) -> tuple[str, tuple]:
        return "reset", (seeds,)

    def _take_reset(self, w: int, reply: tuple[dict[str, np.ndarray], np.ndarray, list[str]]) -> None:
        """An actor replies its envs' first observation and instructions."""
        images, state, instructions = reply
        lo, hi = self._slices[w]
        for cam in self.camera_names:
            self._images[cam][lo:hi] = images[cam]
        self._state[lo:hi] = state
        self._instructions[lo:hi] = instructions

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """One control step per active env; ``actions float32 (N, 7)`` (see `step_chunk`)."""
        a = check_actions(actions, (self.num_envs,))
        self._check_idle()
        return self._wait(self._send(a[:, None, :], active))

    def step_chunk(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """``T`` control steps per active env (``actions float32 (N, T, 7)``), rendering once at the end.

        Returns ``(obs, reward float32 (N,), terminated, truncated bool (N,), info)``; envs not stepped keep their
        last observation.
        """
        chunk = self._chunk(actions)
        self._check_idle()
        return self._wait(self._send(chunk, active))

    def step_chunk_async(self, actions: np.ndarray, active: np.ndarray | None = None) -> _PendingStep:
        """Send a `step_chunk` to the actors holding the active envs and return at once; `step_wait` finishes it.
        Actors with a step already in flight may not be sent another (pipelined rollouts use disjoint halves)."""
        pending = self._send(self._chunk(actions), active)
        busy = set(pending.refs) & self._in_flight
        if busy:
            raise RuntimeError(f"actors {sorted(busy)} already have a step in flight; step_wait() it first")
        self._in_flight |= set(pending.refs)
        return pending

    def step_wait(self, pending: _PendingStep) -> StepResult:
        """Finish a `step_chunk_async` call (same return as `step_chunk`; rows not run and not lost are zero)."""
        try:
            return self._wait(pending, rows=pending.run)
        finally:
            self._in_flight -= set(pending.refs)

    def close(self) -> None:
        """Kill every actor (safe to call twice)."""
        self._finalizer()

    # ---- internals -------------------------------------------------------------------------
    def _send(self, actions: np.ndarray, active: np.ndarray | None) -> _PendingStep:
        """Dispatch a step of ``actions`` float32 (N, T, 7), validated, to the actors with runnable envs."""
        run = self._runnable(active)
        msgs = {w: ("step", (actions[lo:hi], run[lo:hi])) for w, (lo, hi) in enumerate(self._slices)
                if run[lo:hi].any()}
        return _PendingStep(self._dispatch(msgs), run)

    def _wait(self, pending: _PendingStep, rows: np.ndarray | None = None) -> StepResult:
        """Gather a step's replies and assemble its return; ``rows`` (bool (N,)) limits the observation copy to
        those envs and the lost ones (others are zero)."""
        n = self.num_envs
        reward, steps = np.zeros(n, np.float32), np.zeros(n, np.int64)
        terminated, truncated, success = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
        for w, (moved, images, state, r, te, tr, su, st) in self._complete(pending.refs).items():
            lo, hi = self._slices[w]
            for cam in self.camera_names:
                self._images[cam][lo + moved] = images[cam]
            self._state[lo + moved] = state
            reward[lo:hi], terminated[lo:hi], truncated[lo:hi], success[lo:hi], steps[lo:hi] = r, te, tr, su, st
        lost = self._lost.copy()
        truncated |= lost
        info = {"instruction": list(self._instructions), "success": success, "lost": lost, "steps": steps}
        return self._copy_obs(None if rows is None else rows | lost), reward, terminated, truncated, info

    def _roundtrip(self, msgs: dict[int, tuple[str, tuple]]) -> dict[int, Any]:
        """Send ``msgs`` (actor -> (method, args)) and gather the replies under the deadline; failed actors are
        replaced, their envs marked lost, and are absent from the returned dict."""
        self._check_idle()
        return self._complete(self._dispatch(msgs))

    def _check_idle(self) -> None:
        if self._in_flight:
            raise RuntimeError("a step_chunk_async() is in flight; step_wait() it first")

    def _dispatch(self, msgs: dict[int, tuple[str, tuple]]) -> dict[int, Any]:
        if not self._finalizer.alive:
            raise RuntimeError("RayVectorEnv is closed")
        return {w: self._actors[w].serve.remote(method, args) for w, (method, args) in msgs.items()}

    def _complete(self, refs: dict[int, Any]) -> dict[int, Any]:
        """Wait for ``refs`` (actor -> object ref) under the deadline; replace the actors that died or missed it;
        re-raise an exception raised by an env (after every reply is in)."""
        replies, errors, failed = self._gather(refs, self.step_timeout_s)
        if failed:
            self._restart(failed)
        if errors:
            w, err = next(iter(errors.items()))
            raise RuntimeError(f"env actor {w} (envs {self._slices[w]}) raised:\n{err}")
        return replies

    def _gather(self, refs: dict[int, Any], timeout_s: float) -> tuple[dict[int, Any], dict[int, str], dict[int, str]]:
        """(replies, env errors, failures with a reason) of ``refs``, waiting at most ``timeout_s``."""
        ray = self._ray
        replies: dict[int, Any] = {}
        errors: dict[int, str] = {}
        failed: dict[int, str] = {}
        if not refs:
            return replies, errors, failed
        owner = {ref: w for w, ref in refs.items()}
        ready, pending = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout_s)
        for ref in ready:
            w = owner[ref]
            try:
                replies[w], self.rss_mb[w] = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:  # the env raised: report it, the actor lives on
                errors[w] = str(exc)
            except ray.exceptions.RayError as exc:  # the actor died: killed, out of memory, its node lost
                failed[w] = f"died ({type(exc).__name__})"
        for ref in pending:
            failed[owner[ref]] = f"did not answer within {timeout_s:.1f} s"
        for w in list(replies):
            over = self._over_memory(w)
            if over:  # its reply is dropped: the actor is replaced and its envs lost, as if it had died
                del replies[w]
                failed[w] = over
        return replies, errors, failed

    def _over_memory(self, w: int) -> str | None:
        """Why actor ``w`` must go for its memory (its RSS passed ``memory_mb``), else None."""
        rss = self.rss_mb[w]
        if self.memory_mb is None or rss is None or rss <= self.memory_mb:
            return None
        return (f"uses {rss:.0f} MB resident, above {MEMORY_SETTING}={self.memory_mb} (replaced before the OOM "
                "killer picks a process; raise the setting if this is the envs' normal size)")

    def _start(self, ws: list[int]) -> dict[str, Any]:
        """Start actors ``ws`` and wait until their envs are built; returns the env layout."""
        for w in ws:
            lo, hi = self._slices[w]
            self.rss_mb[w] = None  # the replaced actor's figure is not this one's
            self._actors[w] = self._actor_cls.remote(self.env_fns[lo:hi], self._env_vars)
        replies, errors, failed = self._gather({w: self._actors[w].serve.remote("layout", ()) for w in ws},
                                               self.start_timeout_s)
        problems = [f"actor {w}: {e}" for w, e in errors.items()] + [f"actor {w} {why}" for w, why in failed.items()]
        if any(self._over_memory(w) for w in failed):
            raise RuntimeError(f"env actors for {self.name or 'the envs'} are past {MEMORY_SETTING}="
                               f"{self.memory_mb} MB right after building their envs: raise it (or give each actor "
                               "fewer envs: more env actors)\n" + "\n".join(problems))
        if problems:
            raise RuntimeError(f"could not start env actors for {self.name or 'the envs'} (a request of "
                               "actor_cpus/resources the cluster cannot place waits until start_timeout_s):\n"
                               + "\n".join(problems))
        for w in ws:
            self._where[w] = replies[w]
        return replies[ws[0]]

    def _restart(self, failed: dict[int, str]) -> None:
        """Kill and replace the ``failed`` actors (actor -> reason); mark their envs lost."""
        for w, why in failed.items():
            lo, hi = self._slices[w]
            self.restarts += 1
            logger.warning("RayVectorEnv actor %d (pid %s, node %s, envs %d..%d) %s; replacing it (restart #%d); "
                           "its episodes are void until the next reset", w, self._where[w].get("pid"),
                           str(self._where[w].get("node_id"))[:8], lo, hi - 1, why, self.restarts)
            with contextlib.suppress(Exception):
                self._ray.kill(self._actors[w], no_restart=True)
            self._lost[lo:hi] = True
            self._needs_reset[lo:hi] = True
        t0 = time.monotonic()
        self._start(list(failed))
        logger.info("RayVectorEnv: %d actor(s) replaced in %.1f s", len(failed), time.monotonic() - t0)
