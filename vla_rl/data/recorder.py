"""Record episodes of a robot task to a dataset: scripted-expert demos or a learned policy's rollouts.

    summary = collect("mujoco/PickCube-v1", episodes=100, policy="expert", out="demos/pick")

Every control step becomes one frame: the observation *before* the action, the action actually executed
(clipped to [-1, 1]) and whether the task was solved after it. Seeds come from
``vla_rl.splits.split_seeds(split, episodes, start)``, so demos never use val/test initial states.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vla_rl.envs import check_actions

Policy = Callable[[dict[str, np.ndarray], str], np.ndarray]


def _as_chunk(actions: Any) -> np.ndarray:
    a = np.asarray(actions, dtype=np.float32)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"the policy must return an action chunk (T, 7) or one action (7,), got shape {a.shape}")
    return check_actions(a, (a.shape[0],))


def collect(
    task_id: str,
    episodes: int,
    policy: str | Policy = "expert",
    out: str | Path = "demos",
    fmt: str = "lerobot",
    split: str = "train",
    image_size: int = 128,
    start: int = 0,
    progress: bool = True,
    only_success: bool | None = None,
    max_steps: int | None = None,
    overwrite: bool = False,
    lossless: bool = True,
    noise: float = 0.0,
) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``task_id`` in one env and record them to ``out``.

    Args:
        policy: ``"expert"`` (the task's scripted expert, ``env.expert_action()``) or a callable
            ``policy(obs, instruction) -> (T, 7)`` action chunk (or one (7,) action); every action of the
            chunk is executed and recorded, stopping early when the episode ends.
        fmt: ``"lerobot"`` (LeRobot v3.0, `vla_rl.data.lerobot`) or ``"zarr"`` (diffusion-policy replay
            buffer, `vla_rl.data.zarr_buffer`).
        split, start: seeds are ``split_seeds(split, episodes, start)``.
        only_success: keep only successful episodes; default True for the expert (demos), False for a
            callable policy (rollouts, e.g. for RL or failure analysis). Dropped ones count as discarded.
        max_steps: cap the episode length below the task's own limit.
        lossless: LeRobot only: bit-exact video (see `vla_rl.data.lerobot`).
        noise: expert only: DART-style noise injection (Laskey et al. 2017). Each executed action's translation
            gets Gaussian noise of this std (action units; 1 = `POS_SCALE` per step) while the recorded action
            is the expert's own, so the demos show the expert correcting from states a learner drifts into.
            The noise comes from the episode seed (`expert_noise_rng`), so replay regenerates it exactly.

    Returns:
        A summary: attempted, kept, discarded, successes, success_rate, frames, seeds kept, only_success,
        the policy, format, output path and elapsed seconds.
    """
    from vla_rl.envs import make_env
    from vla_rl.splits import split_seeds

    is_expert = _check_collect_args(fmt, policy, episodes, noise)
    if only_success is None:
        only_success = is_expert
    seeds = split_seeds(split, episodes, start)

    env = make_env(task_id, image_size=image_size)
    if max_steps is not None:
        env.max_steps = min(env.max_steps, int(max_steps))
    extra = {"env_task": task_id, "split": split, "policy": "expert" if is_expert else getattr(
        policy, "__name__", type(policy).__name__)}
    if noise:
        extra["expert_noise"] = float(noise)
    writer = _open_writer(env, fmt, out, overwrite=overwrite, lossless=lossless, info_extra=extra)

    t0 = time.perf_counter()
    bar = _progress_bar(progress, f"{task_id} -> {out}", episodes)
    kept_seeds, successes, summary = _record(env, writer, seeds, policy, is_expert, noise, only_success, bar)
    return {
        "task": task_id,
        "out": str(out),
        "format": fmt,
        "policy": extra["policy"],
        "split": split,
        "attempted": len(seeds),
        "kept": len(kept_seeds),
        "discarded": summary["discarded"],
        "successes": successes,
        "success_rate": successes / len(seeds),
        "only_success": only_success,
        "note": "only successful episodes kept" if only_success else "every episode kept, failures included",
        "frames": summary["frames"],
        "seeds": kept_seeds,
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }


def _check_collect_args(fmt: str, policy: str | Policy, episodes: int, noise: float) -> bool:
    """Refuse a bad combination of `collect`'s arguments; returns whether ``policy`` is the scripted expert."""
    if fmt not in ("lerobot", "zarr"):
        raise ValueError(f"unknown format {fmt!r}; valid: lerobot, zarr")
    is_expert = isinstance(policy, str)
    if is_expert and policy != "expert":
        raise ValueError(f"unknown policy {policy!r}: pass 'expert' or a callable policy(obs, instruction)")
    if not is_expert and not callable(policy):
        raise TypeError("policy must be 'expert' or a callable policy(obs, instruction) -> (T, 7) actions")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if noise and not is_expert:
        raise ValueError("noise injection perturbs the scripted expert only; record a checkpoint without noise")
    return is_expert


def _open_writer(env: Any, fmt: str, out: str | Path, *, overwrite: bool, lossless: bool,
                 info_extra: dict[str, Any]) -> Any:
    """The dataset writer of ``fmt`` for ``env``'s cameras; closes ``env`` if it cannot be opened."""
    try:
        if fmt == "lerobot":
            from vla_rl.data.lerobot import LeRobotWriter

            return LeRobotWriter(out, cameras=env.cameras, overwrite=overwrite, lossless=lossless,
                                 info_extra=info_extra)
        from vla_rl.data.zarr_buffer import ZarrWriter

        return ZarrWriter(out, cameras=env.cameras, overwrite=overwrite, info_extra=info_extra)
    except BaseException:
        env.close()
        raise


def _record(env: Any, writer: Any, seeds: list[int], policy: str | Policy, is_expert: bool, noise: float,
            only_success: bool, bar: tuple[Any, Any] | None) -> tuple[list[int], int, dict[str, Any]]:
    """Run one episode per seed, keep or discard each; then close the bar, the writer and the env.

    Returns (the seeds kept, the number of successes, the writer's summary)."""
    kept_seeds: list[int] = []
    successes = 0
    try:
        for seed in seeds:
            success = _run_episode(env, writer, seed, policy, is_expert, noise)
            successes += success
            if only_success and not success:
                writer.discard_episode()
            else:
                writer.end_episode(seed=seed, success=success)
                kept_seeds.append(seed)
            if bar is not None:
                bar[0].update(bar[1], advance=1, kept=len(kept_seeds), succ=successes)
    finally:
        if bar is not None:
            bar[0].stop()
        summary = writer.close()
        env.close()
    return kept_seeds, successes, summary


def expert_noise_rng(seed: int) -> np.random.Generator:
    """The noise stream of a noisy-expert episode (a pure function of its seed)."""
    return np.random.default_rng([0x4441_5254, seed])  # "DART"


def perturb(action: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """The executed action of a noisy expert: ``action`` (7,) with N(0, noise) added to the translation (3 dims),
    clipped to [-1, 1]. Draws 3 normals from ``rng`` per call (replay relies on that); ``noise`` 0: ``action``
    itself, nothing drawn."""
    if not noise:
        return action
    out = np.array(action, dtype=np.float32, copy=True)
    out[:3] = np.clip(out[:3] + noise * rng.standard_normal(3), -1.0, 1.0)
    return out


def _run_episode(env: Any, writer: Any, seed: int, policy: str | Policy, is_expert: bool,
                 noise: float = 0.0) -> bool:
    obs, info = env.reset(seed=seed)
    rng = expert_noise_rng(seed)
    writer.start(env.instruction, seed=seed)
    done = False
    success = False
    while not done:
        chunk = _as_chunk(env.expert_action() if is_expert else policy(obs, env.instruction))  # type: ignore[operator]
        for action in chunk:
            next_obs, _, terminated, truncated, info = env.step(perturb(action, rng, noise))
            success = success or bool(info["success"])
            writer.add_frame(obs, action, bool(info["success"]))
            obs = next_obs
            done = bool(terminated or truncated)
            if done:
                break
    return success


def _progress_bar(enabled: bool, description: str, total: int) -> tuple[Any, Any] | None:
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("kept {task.fields[kept]} success {task.fields[succ]}"), TimeRemainingColumn())
    task = bar.add_task(description, total=total, kept=0, succ=0)
    bar.start()
    return bar, task
