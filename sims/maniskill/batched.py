"""`ManiSkillBatchedVectorEnv`: N sub-envs of one ManiSkill3 task in ONE ManiSkill env (``num_envs=N``), for
ManiSkill's GPU-batched simulation (PhysX CUDA) in place of our worker processes.

It implements the `vla_rl.envs.VectorEnv` contract with `sims.maniskill.env.ManiSkillEnv`'s observations, action
conversion, cameras, success and step limits (the helpers are shared, not copied). Chosen with
``env.vector_env: maniskill-gpu`` (or this entry point) in a config; `make_vector_env` passes it the same
``functools.partial(make_env, "maniskill/<Task>", ...)`` factories as every vector env, read here as the env spec
(entry point, kwargs, step limit), never called: no CPU copy of the task is built.

How it maps our per-env contract onto one batched simulation:

* reset: every sub-env is reset on its own (``options={"env_idx": [i]}``, ``seed=[seed_i]``). ManiSkill 3.0.1 draws
  a batch's initial states from one torch generator seeded by the batch's first seed, so a batched reset would make
  sub-env ``i``'s scene depend on its neighbours' seeds; alone, it is a function of its seed (GRPO's groups replay
  one seed in G envs and need G equal scenes). Tasks that draw their shapes when the scene is built (``reconfigure``:
  PegInsertionSide) are first rebuilt once for all, each sub-env's shapes drawn from its own seed.
* step_chunk: ManiSkill steps every sub-env together. An env that is inactive or whose episode ended holds still
  meanwhile (zero motion, its last gripper command) and its counters and observation do not change; the loop stops
  when no env is running. An env that finished mid-chunk keeps the observation rendered at the chunk's end (a few
  hold steps later), where `SubprocVectorEnv` shows the step it finished on; rollouts never act on it.
* rendering: once per chunk, all sub-envs batched; rows of envs that did not step keep their last observation.
* faults: the simulation runs in this process; nothing is restarted and ``info["lost"]`` is always False (an error
  in the simulator raises). There is one "worker", so pipelined rollouts (`env_halves`) are refused.

ManiSkill's CPU simulation holds one sub-env per process: on CPU, N > 1 is refused (use the default worker-layer
vector env, which runs `ManiSkillEnv` in processes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Self

import numpy as np
from gymnasium.utils import seeding

from sims.maniskill.env import (
    TASKS,
    build_task,
    check_task,
    choose_instruction,
    proprio_rows,
    render_cameras,
    spaces,
    to_maniskill_action,
)
from vla_rl.envs import CAMERAS, Obs, StepResult, check_actions, env_spec, make_env
from vla_rl.envs.sharded import env_seeds

ENTRY_POINT = "sims.maniskill.env:ManiSkillEnv"
_HOLD_GRIPPER_OPEN = 1.0  # ManiSkill's gripper command at reset (its sign: +1 open)


def resolve_backend(sim_backend: str) -> str:
    """``auto`` -> ``gpu`` when CUDA is available, else ``cpu``; ``cpu`` / ``gpu`` pass through."""
    if sim_backend not in ("auto", "cpu", "gpu"):
        raise ValueError(f"sim_backend must be 'auto', 'cpu' or 'gpu', got {sim_backend!r}")
    if sim_backend != "auto":
        return sim_backend
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def spec_kwargs(env_fns: Sequence[Callable[[], Any]]) -> tuple[str, dict[str, Any]]:
    """The task id and `ManiSkillEnv` keyword arguments (the spec's, the factory's, the step limit) that ``env_fns``
    would build: identical ``functools.partial(make_env, "maniskill/<Task>", ...)`` factories.

    Raises:
        ValueError: the factories are not that, differ, or name an env that is not a ManiSkill task.
    """
    first = env_fns[0]
    if not (isinstance(first, functools.partial) and first.func is make_env and len(first.args) == 1):
        raise ValueError("ManiSkillBatchedVectorEnv reads its task from functools.partial(make_env, id, ...) "
                         f"factories (what make_vector_env passes); got {first!r}")
    if any(not isinstance(fn, functools.partial) or (fn.func, fn.args, fn.keywords) !=
           (first.func, first.args, first.keywords) for fn in env_fns):
        raise ValueError("ManiSkillBatchedVectorEnv batches one task: every env factory must be the same")
    task_id = first.args[0]
    spec = env_spec(task_id)
    if spec.entry_point != ENTRY_POINT:
        raise ValueError(f"{task_id!r} is not a ManiSkill task (entry point {spec.entry_point}); "
                         "ManiSkillBatchedVectorEnv runs maniskill/* ids only")
    kwargs = {**spec.kwargs, **first.keywords}
    if spec.max_episode_steps is not None:
        kwargs.setdefault("max_episode_steps", spec.max_episode_steps)
    return task_id, kwargs


class ManiSkillBatchedVectorEnv:
    """``len(env_fns)`` sub-envs of one ManiSkill task in one ManiSkill env (see the module docstring).

    Args:
        env_fns: N identical ``functools.partial(make_env, "maniskill/<Task>", ...)`` (read, not called).
        num_workers, step_timeout_s: accepted for `make_vector_env`'s call; unused (no worker processes).
        name: the task id, for messages.
        sim_backend: ``auto`` (``gpu`` when CUDA is available, else ``cpu``), ``gpu`` (PhysX CUDA), ``cpu``
            (one sub-env only).

    Attributes:
        num_envs, num_workers (1), camera_names, image_size, state_dim, max_steps, single_observation_space,
        single_action_space, instructions, sim_backend, restarts (always 0), ms (ManiSkill's env).
    """

    def __init__(self, env_fns: Sequence[Callable[[], Any]], num_workers: int | None = None,
                 step_timeout_s: float = 30.0, name: str = "", sim_backend: str = "auto") -> None:
        del num_workers, step_timeout_s
        n = len(env_fns)
        if n < 1:
            raise ValueError(f"env_fns must hold at least one env factory, got {n}")
        task_id, kw = spec_kwargs(env_fns)
        self.sim_backend = resolve_backend(sim_backend)
        if self.sim_backend == "cpu" and n > 1:
            raise ValueError(f"ManiSkill's CPU simulation holds one env per process; {n} envs of {task_id} need a "
                             "GPU (sim_backend='gpu'), or the default worker-layer vector env "
                             "(env.vector_env: sims.vector:SubprocVectorEnv), which runs ManiSkillEnv in processes")
        self.name, self.num_envs, self.num_workers, self.restarts = name or task_id, n, 1, 0
        self.task = kw.pop("task")
        self.camera_names = tuple(kw.get("cameras", CAMERAS))
        check_task(self.task, self.camera_names)
        self.image_size, self.max_steps = int(kw.get("image_size", 128)), int(kw["max_episode_steps"])
        self.reconfigure, self.show_goal = bool(kw.get("reconfigure", False)), bool(kw.get("show_goal", False))
        self.instructions = TASKS[self.task].instructions
        self.single_observation_space, self.single_action_space = spaces(self.camera_names, self.image_size)
        self.state_dim = int(self.single_observation_space["state"].shape[0])
        self.ms: Any = build_task(self.task, self.camera_names, self.image_size, n, self.sim_backend)
        self._rngs = [seeding.np_random(None)[0] for _ in range(n)]
        self._instructions = [""] * n
        self._elapsed = np.zeros(n, np.int64)
        self._done = np.ones(n, bool)  # no episode yet: reset first
        self._reset_once = False
        self._gripper = np.full(n, _HOLD_GRIPPER_OPEN, np.float32)
        self._images = {c: np.zeros((n, self.image_size, self.image_size, 3), np.uint8) for c in self.camera_names}
        self._state = np.zeros((n, self.state_dim), np.float32)

    # ---- the contract -----------------------------------------------------------------------
    def reset(self, seed: int | list[int] | None = None) -> tuple[Obs, dict[str, Any]]:
        """Reset every env: ``seed`` int ``s`` gives env ``i`` seed ``s + i``, a list one per env, None fresh ones.

        Returns ``(obs, info)`` as `SubprocVectorEnv.reset`: images ``uint8 (N, S, S, 3)``, ``state float32 (N, 8)``;
        info ``instruction``, ``success`` / ``lost`` ``bool (N,)`` (False), ``steps`` ``int64 (N,)`` (0).
        """
        import torch

        seeds = env_seeds(seed, self.num_envs)
        if self.reconfigure or None in seeds:  # all at once: rebuild the scenes, or fresh random episodes
            self.ms.reset(seed=None if None in seeds else seeds, options={"reconfigure": self.reconfigure})
        for i, s in enumerate(seeds):
            if s is not None:  # alone, so its initial state is a function of its seed (the module docstring)
                self.ms.reset(seed=[s], options={"env_idx": torch.tensor([i], device=self.ms.device)})
        for i, s in enumerate(seeds):
            if s is not None:
                self._rngs[i] = seeding.np_random(s)[0]
            self._instructions[i] = choose_instruction(self._rngs[i], self.instructions)
        self._elapsed[:] = 0
        self._done[:] = False
        self._gripper[:] = _HOLD_GRIPPER_OPEN
        self._reset_once = True
        self._render(np.ones(self.num_envs, bool))
        n = self.num_envs
        info = {"instruction": list(self._instructions), "success": np.zeros(n, bool), "lost": np.zeros(n, bool),
                "steps": np.zeros(n, np.int64)}
        return self._copy_obs(), info

    def step(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """One control step per active env: ``actions float32 (N, 7)``; the returns of `step_chunk`."""
        a = check_actions(actions, (self.num_envs,))
        return self._step(a[:, None, :], active)

    def step_chunk(self, actions: np.ndarray, active: np.ndarray | None = None) -> StepResult:
        """``T`` control steps per active env (``actions float32 (N, T, 7)``), rendering once at the end; an env
        stops at success or its step limit (``info["steps"]``: steps executed). Returns ``(obs, reward float32 (N,)
        (1 on success), terminated bool (N,) (success), truncated bool (N,) (the limit without success), info)``."""
        a = np.asarray(actions)
        if a.ndim != 3:
            raise ValueError(f"actions have shape {a.shape}, expected (N={self.num_envs}, T, 7)")
        return self._step(check_actions(a, (self.num_envs, a.shape[1])), active)

    def call(self, name: str, *args: Any, indices: list[int] | None = None, **kwargs: Any) -> list[Any]:
        """Per env in ``indices`` (default all): a setting shared by every env (``max_steps``, ``task``,
        ``instructions``...), or ``get_state`` / ``proprio`` (that env's row). Other per-env methods (the
        motion-planning ``expert_action``) need one ManiSkill env per task instance: the worker-layer vector env."""
        idx = list(range(self.num_envs)) if indices is None else [int(i) for i in indices]
        if name in ("get_state", "proprio"):
            rows = getattr(self, name)(*args, **kwargs)
            return [rows[i] for i in idx]
        if name.startswith("_") or not hasattr(self, name) or callable(getattr(self, name)):
            raise AttributeError(f"ManiSkillBatchedVectorEnv.call({name!r}): not available per env in the batched "
                                 "simulation (settings, get_state and proprio are); for ManiSkillEnv's methods "
                                 "(expert_action...) use the default vector env (sims.vector:SubprocVectorEnv)")
        return [getattr(self, name)] * len(idx)

    def get_state(self) -> np.ndarray:
        """float32 (N, D): each sub-env's whole simulation state (ManiSkill's flat vector)."""
        return self.ms.get_state().cpu().numpy()

    def proprio(self) -> np.ndarray:
        """float32 (N, 8): each sub-env's TCP position (m), axis-angle (rad), finger positions (m)."""
        return proprio_rows(self.ms)

    def worker_of(self, env_index: int) -> int:
        """Always 0: one process holds every env."""
        if not 0 <= env_index < self.num_envs:
            raise IndexError(f"env index {env_index} out of range [0, {self.num_envs})")
        return 0

    def close(self) -> None:
        """Close ManiSkill's env (safe to call twice)."""
        if getattr(self, "ms", None) is not None:
            self.ms.close()
            self.ms = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- internals --------------------------------------------------------------------------
    def _step(self, actions: np.ndarray, active: np.ndarray | None) -> StepResult:
        """``actions float32 (N, T, 7)``, already validated: run the chunk, then render the envs that moved."""
        run = self._runnable(active)
        n = self.num_envs
        success, steps = np.zeros(n, bool), np.zeros(n, np.int64)
        for t in range(actions.shape[1]):
            running = run & ~self._done
            if not running.any():
                break
            solved = self._control(actions[:, t], running)
            success[running] = solved[running]
            self._elapsed[running] += 1
            steps[running] += 1
            self._done |= running & (solved | (self._elapsed >= self.max_steps))
        truncated = run & (self._elapsed >= self.max_steps) & ~success  # as ChunkStepping, for the envs asked
        self._render(steps > 0)
        info = {"instruction": list(self._instructions), "success": success, "lost": np.zeros(n, bool),
                "steps": steps}
        return self._copy_obs(), success.astype(np.float32), success.copy(), truncated, info

    def _control(self, actions: np.ndarray, running: np.ndarray) -> np.ndarray:
        """One simulation step of every sub-env: ``actions (N, 7)`` for the ``running`` ones, a hold (no motion,
        the last gripper command) for the rest; returns the task's success bool (N,)."""
        ms_actions = np.zeros((self.num_envs, 7), np.float32)
        ms_actions[:, 6] = self._gripper
        for i in np.flatnonzero(running):
            ms_actions[i] = to_maniskill_action(actions[i])
        self._gripper[running] = ms_actions[running, 6]
        _, _, _, _, info = self.ms.step(ms_actions)  # as ManiSkillEnv sends it; ManiSkill moves it to its device
        return info["success"].cpu().numpy().astype(bool).reshape(self.num_envs)

    def _render(self, rows: np.ndarray) -> None:
        """Render every camera and read the proprio of all sub-envs; keep the ``rows`` (bool (N,))."""
        if not rows.any():
            return
        for c, img in render_cameras(self.ms, self.camera_names, self.show_goal).items():
            self._images[c][rows] = img[rows]
        self._state[rows] = proprio_rows(self.ms)[rows]

    def _runnable(self, active: np.ndarray | None) -> np.ndarray:
        act = np.ones(self.num_envs, bool) if active is None else np.asarray(active, bool)
        if act.shape != (self.num_envs,):
            raise ValueError(f"active has shape {act.shape}, expected ({self.num_envs},)")
        if act.any() and not self._reset_once:
            raise RuntimeError("call reset() before stepping")
        return act

    def _copy_obs(self) -> Obs:
        obs = {c: img.copy() for c, img in self._images.items()}
        obs["state"] = self._state.copy()
        return obs
