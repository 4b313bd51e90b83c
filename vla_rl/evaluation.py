"""Evaluate a policy on robot tasks over a seed split, with per-task success, CI and a video.

Policies here act on batched observations and return action chunks ``(N, T, 7)``. ``expert`` runs each
task's scripted expert (privileged state, inside the env workers); ``random`` samples uniform actions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from vla_rl.config import Config
from vla_rl.envs import EnvConfig, Obs, VectorEnv, check_task_id, make_vector_env, robot_task_ids
from vla_rl.policies.vla.configuration_vla import PointDecoding
from vla_rl.rollout.episodes import ChunkPolicy, Wave, run_waves
from vla_rl.utils.io import atomic_write_json
from vla_rl.utils.stats import wilson_interval


class ExpertPolicy:
    """The tasks' scripted experts (privileged state, read inside ``env``'s workers), one action per call (T = 1)."""

    def __init__(self, env: VectorEnv) -> None:
        self.env = env

    def act(self, obs: Obs, instructions: list[str], active: np.ndarray | None = None) -> np.ndarray:
        return np.stack(self.env.call("expert_action"))[:, None, :]


class RandomPolicy:
    """Uniform random actions in [-1, 1], ``chunk`` steps per call."""

    def __init__(self, seed: int = 0, chunk: int = 8) -> None:
        self.rng = np.random.default_rng(seed)
        self.chunk = chunk

    def act(self, obs: Obs, instructions: list[str], active: np.ndarray | None = None) -> np.ndarray:
        return self.rng.uniform(-1, 1, (len(instructions), self.chunk, 7)).astype(np.float32)


class EvalConfig(Config):
    """`vla-rl eval`: success per task over a seed split."""

    policy: str = Field("expert", description="'expert', 'random', or a checkpoint folder")
    task: str = Field("all", description="a robot task id, a comma-separated list, or 'all' "
                      "(every native MuJoCo task)")
    episodes: int = Field(50, ge=1, description="episodes per task")
    split: Literal["train", "val", "test"] = Field("test", description="seed split of initial states")
    videos: int = Field(2, ge=0, description="episodes per task written to mp4")
    out: str = Field("runs/eval", description="folder for eval.json and videos")
    seed: int = Field(0, description="seed of the random policy and of sampled VLA tokens")
    temperature: float | None = Field(None, gt=0, description="sample a VLA checkpoint's action tokens at this "
                                      "temperature (the stochastic policy GRPO trains); None: greedy")
    point_decoding: PointDecoding | None = Field(
        None, description="greedy token choice: argmax or median bin (None: the checkpoint's point_decoding)")
    n_action_steps: int | None = Field(None, ge=1, description="steps of each VLA chunk executed before the "
                                       "policy is called again (None: the checkpoint's n_action_steps)")
    env: EnvConfig = Field(default_factory=lambda: EnvConfig(num_envs=10))

    @field_validator("task")
    @classmethod
    def _known(cls, v: str) -> str:
        for t in _task_list(v):
            check_task_id(t)
        return v


def _task_list(spec: str) -> list[str]:
    return robot_task_ids("mujoco") if spec == "all" else [t.strip() for t in spec.split(",") if t.strip()]


class VLAChunkPolicy:
    """A VLA checkpoint acting greedily (evaluation) or with temperature sampling."""

    def __init__(self, policy: Any, greedy: bool = True, temperature: float = 1.0, seed: int = 0,
                 point_decoding: str | None = None) -> None:
        import torch

        self.policy = policy.eval()
        self.processor = policy.processor()
        self.greedy = greedy
        self.temperature = temperature
        self.point_decoding = point_decoding  # None: the checkpoint's own
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def from_pretrained(cls, path: str | Path, n_action_steps: int | None = None, **kwargs: Any) -> VLAChunkPolicy:
        """A checkpoint folder's VLA (``n_action_steps``: override its action horizon), named ``vla:<path>``
        (the name `vla_rl.data.recorder.collect` writes into a dataset's info)."""
        from vla_rl.policies.factory import load_robot_policy

        vla = load_robot_policy(path)  # our VLA, or an OpenVLA / OpenVLA-OFT folder
        if n_action_steps is not None:
            vla.set_n_action_steps(n_action_steps)
        chunks = cls(vla, **kwargs)
        chunks.__name__ = f"vla:{path}"
        return chunks

    def act(self, obs: Obs, instructions: list[str], active: np.ndarray | None = None) -> np.ndarray:
        """Chunks (N, T, 7); only the ``active`` rows are inferred (the others are zero)."""
        if active is None or active.all():
            return self._infer(obs, instructions)
        rows = np.flatnonzero(active)
        sub = self._infer({k: v[rows] for k, v in obs.items()}, [instructions[i] for i in rows])
        out = np.zeros((len(active), *sub.shape[1:]), sub.dtype)
        out[rows] = sub
        return out

    def __call__(self, obs: Obs, instruction: str) -> np.ndarray:
        """One env's observation (images (H, W, 3), state (D,)) -> its chunk (T, 7): `act` on a batch of one, for
        single-env recording (`vla_rl.data.recorder.collect` calls ``policy(obs, instruction)``)."""
        return self.act({k: np.asarray(v)[None] for k, v in obs.items()}, [instruction])[0]

    def _infer(self, obs: Obs, instructions: list[str]) -> np.ndarray:
        out = self.policy.act(self.processor(obs, instructions), temperature=self.temperature, greedy=self.greedy,
                              generator=self.generator, point_decoding=self.point_decoding)
        return out.actions


def make_policy(cfg: EvalConfig, env: VectorEnv | None = None) -> ChunkPolicy:
    """``expert`` (acting in ``env``), ``random`` or a checkpoint folder (written by `vla-rl sft` / `vla-rl train`)."""
    if cfg.policy == "expert":
        if env is None:
            raise ValueError("the expert acts in an env: make_policy(cfg, env)")
        return ExpertPolicy(env)
    if cfg.policy == "random":
        return RandomPolicy(cfg.seed)
    path = Path(cfg.policy)
    if not (path / "config.json").is_file():
        raise ValueError(f"policy {cfg.policy!r} is neither 'expert', 'random' nor a checkpoint folder "
                         "(a folder holding config.json and model.safetensors)")
    greedy = cfg.temperature is None
    return VLAChunkPolicy.from_pretrained(path, cfg.n_action_steps, greedy=greedy,
                                          temperature=1.0 if greedy else cfg.temperature, seed=cfg.seed,
                                          point_decoding=cfg.point_decoding)


class _Frames:
    """`run_episodes`' observer: the frames of the first ``record`` episodes, uint8 (H, W * cameras, 3) each."""

    def __init__(self, cameras: tuple[str, ...], record: int) -> None:
        self.cameras, self.record = cameras, record
        self.videos: dict[int, list[np.ndarray]] = {}  # episode -> its frames (a re-run replaces a lost one's)

    def on_reset(self, wave: Wave) -> None:
        self.wave = {i: [self._frame(wave, i)] for i, e in enumerate(wave.episodes) if e < self.record}
        self.videos |= {wave.episodes[i]: frames for i, frames in self.wave.items()}

    def on_chunk(self, wave: Wave, rows: np.ndarray, info: dict[str, Any]) -> None:
        for i in rows:
            if i in self.wave:
                self.wave[i].append(self._frame(wave, i))

    def _frame(self, wave: Wave, i: int) -> np.ndarray:
        return np.concatenate([wave.obs[c][i] for c in self.cameras], axis=1)


def run_episodes(env: VectorEnv, policy: ChunkPolicy, seeds: list[int],
                 record: int = 0) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Run one episode per seed (`run_waves`), ``env.num_envs`` at a time, until each terminates or truncates.

    Returns per-episode records (seed, success, lost, steps, instruction) and, for the first
    ``record`` episodes, their frames uint8 (T, H, W * cameras, 3).
    """
    frames = _Frames(env.camera_names, record)
    records = run_waves(env, policy, seeds, frames)
    return records, [np.stack(frames.videos[e]) for e in sorted(frames.videos)]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Success over non-lost episodes with a 95% Wilson interval."""
    valid = [r for r in records if not r["lost"]]
    k = sum(r["success"] for r in valid)
    lo, hi = wilson_interval(k, len(valid))
    return {"success": k / len(valid) if valid else float("nan"), "ci95": [lo, hi], "episodes": len(valid),
            "lost": len(records) - len(valid),
            "mean_steps": float(np.mean([r["steps"] for r in valid])) if valid else float("nan")}


def evaluate_policy(policy, tasks: list[str], split: str, episodes: int, env_cfg: EnvConfig,
                    greedy: bool = True, start: int = 0, point_decoding: str | None = None,
                    envs: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Success of ``policy`` per task over ``episodes`` seeds of ``split`` (vector envs at the policy's
    image size and cameras); greedy tokens by ``point_decoding`` (None: the policy's own).

    ``envs``: vector envs already started, one per task, rendering at the policy's image size and cameras
    (the GRPO trainer's rollout envs): used as they are and left open, which spares starting workers and
    renderers for every validation; every episode is reset from its seed, so the outcomes are the same."""
    import torch

    from vla_rl.envs import make_vector_env  # (looked up per call: a test checks that none is started)
    from vla_rl.splits import split_seeds

    missing = [t for t in tasks if envs is not None and t not in envs]
    if missing:
        raise ValueError(f"evaluate_policy: no started env for {', '.join(missing)} (envs has {', '.join(envs or [])})")
    ecfg = env_cfg.for_policy(policy.config).model_copy(update={"num_envs": min(env_cfg.num_envs, episodes)})
    was_training = policy.training
    chunk_policy = VLAChunkPolicy(policy, greedy=greedy, point_decoding=point_decoding)
    out = {}
    with torch.no_grad():
        for task in tasks:
            env = envs[task] if envs is not None else make_vector_env(ecfg, task)
            try:
                records, _ = run_episodes(env, chunk_policy, split_seeds(split, episodes, start))
            finally:
                if envs is None:
                    env.close()
            out[task] = summarize(records)
    policy.train(was_training)  # handed back in the mode it came in
    return out


def evaluate(cfg: EvalConfig, console: Any = None) -> dict[str, Any]:
    """Evaluate ``cfg.policy`` on each task; writes ``<out>/eval.json`` and mp4s; returns the results."""
    from vla_rl.splits import split_seeds
    from vla_rl.utils.video import write_mp4

    policy = make_policy(cfg) if cfg.policy != "expert" else None  # the expert: one per env, below
    if isinstance(policy, VLAChunkPolicy):  # render what the policy reads, at its resolution
        cfg = cfg.model_copy(update={"env": cfg.env.for_policy(policy.policy.config)})
    out = Path(cfg.out)
    results: dict[str, Any] = {"policy": cfg.policy, "split": cfg.split, "temperature": cfg.temperature,
                               "tasks": {}}
    if isinstance(policy, VLAChunkPolicy) and policy.greedy:
        results["point_decoding"] = cfg.point_decoding or policy.policy.config.point_decoding
    for task in _task_list(cfg.task):
        t0 = time.perf_counter()
        env = make_vector_env(cfg.env, task)
        try:
            acting = policy if policy is not None else make_policy(cfg, env)
            records, videos = run_episodes(env, acting, split_seeds(cfg.split, cfg.episodes), cfg.videos)
        finally:
            env.close()
        summary = summarize(records) | {"wall_s": time.perf_counter() - t0}
        if videos:
            path = out / f"{task.replace('/', '_')}.mp4"
            write_mp4(path, (f for v in videos for f in v))
            summary["video"] = str(path)
        results["tasks"][task] = summary
        if console is not None:
            console.print(f"{task}: success {summary['success']:.1%} over {summary['episodes']} episodes "
                          f"({summary['wall_s']:.1f} s)")
    rates = [r["success"] for r in results["tasks"].values()]
    results["mean_success"] = float(np.mean(rates))
    atomic_write_json(out / "eval.json", results)
    return results


class SimConfig(Config):
    """`vla-rl sim`: run one episode of a task and save an mp4 of both cameras."""

    task: str = Field("mujoco/PickCube-v1", description="robot task id")
    policy: Literal["expert", "random"] = Field("expert", description="who acts")
    seed: int = Field(0, description="initial-state seed (train split: 0..999999)")
    image_size: int = Field(256, ge=16, le=1024, description="camera image side, pixels")
    out: str = Field("runs/sim.mp4", description="video path")

    @field_validator("task")
    @classmethod
    def _known(cls, v: str) -> str:
        return check_task_id(v)


def run_sim(cfg: SimConfig) -> dict[str, Any]:
    """One episode in a single env; returns {success, steps, instruction, video}."""
    from vla_rl.envs import make_env
    from vla_rl.utils.video import write_mp4

    env = make_env(cfg.task, image_size=cfg.image_size)
    rng = np.random.default_rng(cfg.seed)
    try:
        obs, info = env.reset(seed=cfg.seed)
        frames = [np.concatenate([obs[c] for c in env.cameras], axis=1)]
        success, steps = False, 0
        while True:
            a = env.expert_action() if cfg.policy == "expert" else rng.uniform(-1, 1, 7).astype(np.float32)
            obs, _, term, trunc, step_info = env.step(a)
            steps += 1
            frames.append(np.concatenate([obs[c] for c in env.cameras], axis=1))
            if term or trunc:
                success = bool(step_info["success"])
                break
        path = write_mp4(cfg.out, frames)
    finally:
        env.close()
    return {"task": cfg.task, "instruction": info["instruction"], "success": success, "steps": steps,
            "video": str(path)}
