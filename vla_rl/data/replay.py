"""Replay a recorded episode in the simulator from its seed and measure how far the states drift.

Our MuJoCo sim is deterministic, so a faithful recording replays with deviation 0: the same seed gives
the same initial state and the same actions give the same trajectory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vla_rl.data import DatasetError


def replay_episode(root: str | Path, episode: int, video: str | Path | None = None,
                   task: str | None = None) -> dict[str, Any]:
    """Re-execute episode ``episode`` of the LeRobot dataset at ``root``.

    Returns ``max_state_deviation`` (max |recorded - replayed| over every step and state dim),
    ``max_pixel_deviation`` (over every camera frame, uint8 levels), the step count, the recorded and
    replayed success, and the side-by-side video path (recorded | replayed) when ``video`` is given.
    """
    from vla_rl.data.lerobot import LeRobotReader
    from vla_rl.data.recorder import expert_noise_rng, perturb
    from vla_rl.envs import make_env

    reader = LeRobotReader(root)
    ep = reader.episode(episode)
    meta = reader.info.get("vla_rl", {})
    task = task or meta.get("env_task")
    if not task:
        raise DatasetError(Path(root) / "meta/info.json", "no env task recorded (info.vla_rl.env_task); "
                           "pass task= explicitly")
    if ep.seed is None:
        raise DatasetError(Path(root), f"episode {episode} has no seed: it cannot be replayed in the sim")
    size = next(iter(ep.frames.values())).shape[1] if ep.frames else 128
    noise = float(meta.get("expert_noise", 0.0))
    rng = expert_noise_rng(ep.seed)  # a noisy expert's demo: regenerate what it executed
    env = make_env(task, image_size=size, cameras=tuple(ep.frames) or ("agentview",))
    try:
        obs, _ = env.reset(seed=ep.seed)
        state_dev, pix_dev, frames, success = 0.0, 0, [], False
        for t in range(len(ep)):
            state_dev = max(state_dev, float(np.abs(obs["state"] - ep.state[t]).max()))
            for cam, rec in ep.frames.items():
                pix_dev = max(pix_dev, int(np.abs(obs[cam].astype(int) - rec[t].astype(int)).max()))
            if video is not None:
                frames.append(np.concatenate([ep.frames[c][t] for c in ep.frames] +
                                             [obs[c] for c in ep.frames], axis=1))
            obs, _, term, trunc, info = env.step(perturb(ep.action[t], rng, noise))
            success = success or bool(info["success"])
    finally:
        env.close()
    out = {"task": task, "episode": episode, "seed": ep.seed, "steps": len(ep), "max_state_deviation": state_dev,
           "max_pixel_deviation": pix_dev, "recorded_success": bool(ep.success), "replayed_success": success}
    if video is not None:
        from vla_rl.utils.video import write_mp4

        out["video"] = str(write_mp4(video, frames))
    return out
