"""The GRPO trainer (robot modality): rollouts with temperature, outcome rewards, group advantages,
PPO-style epochs over the samples with any registered policy loss.

One iteration: ``seeds_per_iter`` train-split initial states x ``group_size`` rollouts each, for every
task in turn; success is the reward; group advantages (`vla_rl.algos.ADVANTAGES`) are spread over all
action tokens of the trajectory's samples; lost episodes are dropped; with ``dynamic_sampling`` groups
whose rewards are all equal are dropped and new seeds are rolled out (up to ``max_resample`` rounds).
Checkpoints (policy + optimizer + RNG + counters) are written atomically every ``checkpoint_every``
iterations; ``resume=true`` continues from ``<out>/state``.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from vla_rl.config import Config
from vla_rl.envs import EnvConfig, check_task_id


class GRPOConfig(Config):
    """`vla-rl train`: GRPO on robot tasks from an SFT checkpoint."""

    tasks: list[str] = Field(..., min_length=1, description="robot task ids")
    init: str = Field(..., description="checkpoint folder to start from (e.g. runs/sft/best)")
    out: str = Field("runs/grpo", description="run folder")
    iterations: int = Field(20, ge=1)
    seeds_per_iter: int = Field(8, ge=1, description="initial states per task per iteration")
    group_size: int = Field(8, ge=2, description="rollouts per initial state (G)")
    temperature: float = Field(1.6, gt=0, description="sampling temperature (SimpleVLA-RL: 1.6)")
    advantage: str = Field("grpo", description="advantage estimator: grpo, drgrpo, rloo")
    loss: str = Field("ppo_clip", description="policy loss: ppo_clip, clip_cov, kl_cov, nft, luffy")
    loss_kwargs: dict[str, Any] = Field(default_factory=lambda: {"eps_low": 0.2, "eps_high": 0.28},
                                        description="keyword arguments of the loss (clip bounds, ...)")
    agg_mode: str = "token-mean"
    kl_coef: float = Field(0.0, ge=0, description="KL-to-reference loss coefficient (0: no reference model)")
    kl_kind: str = "k3"
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    epochs: int = Field(2, ge=1, description="passes over each iteration's samples")
    minibatch_size: int = Field(128, ge=1, description="samples per gradient step")
    pipelined: bool = Field(False, description="overlap simulation of one half of the envs with inference "
                            "for the other (needs >= 2 env workers)")
    dynamic_sampling: bool = Field(False, description="drop all-equal groups and resample (DAPO)")
    max_resample: int = Field(2, ge=0)
    eval_every: int = Field(5, ge=1)
    eval_episodes: int = Field(50, ge=0, description="validation episodes per task (greedy); 0: none")
    checkpoint_every: int = Field(5, ge=1)
    nan_patience: int = Field(3, ge=1, description="stop after this many consecutive non-finite updates")
    resume: bool = False
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    env: EnvConfig = Field(default_factory=lambda: EnvConfig(num_envs=16))

    @field_validator("tasks")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return [check_task_id(t) for t in v]

    @field_validator("advantage")
    @classmethod
    def _adv(cls, v: str) -> str:
        from vla_rl.algos import ADVANTAGES

        ADVANTAGES.get(v)
        return v

    @field_validator("loss")
    @classmethod
    def _loss(cls, v: str) -> str:
        from vla_rl.algos import POLICY_LOSSES

        POLICY_LOSSES.get(v)
        return v


class NonFiniteUpdates(RuntimeError):
    """Too many consecutive updates with a NaN/inf loss or gradient."""


class GRPOTrainer:
    """Holds the policy, optimizer and envs of one GRPO run (see the module docstring)."""

    def __init__(self, cfg: GRPOConfig, console: Any = None) -> None:
        from vla_rl.envs import make_vector_env
        from vla_rl.policies.vla.modeling_vla import VLAPolicy
        from vla_rl.trainers.metrics import MetricsLogger

        self.cfg = cfg
        self.console = console
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        elif cfg.pipelined:  # leave cores to the half that simulates (bench/results/rollout.json)
            torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
        self.out = Path(cfg.out)
        state_dir = self.out / "state"
        resuming = cfg.resume and (state_dir / "trainer.pt").is_file()
        self.policy = VLAPolicy.from_pretrained(state_dir / "policy" if resuming else cfg.init)
        self.ref = VLAPolicy.from_pretrained(cfg.init).eval() if cfg.kl_coef > 0 else None
        self.opt = torch.optim.AdamW(self.policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                     betas=(0.9, 0.95))
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.iteration = 0
        self.seed_cursor = 0
        self.nan_streak = 0
        self.nan_skipped = 0
        self.best = -1.0
        if resuming:
            st = torch.load(state_dir / "trainer.pt", weights_only=False)
            self.opt.load_state_dict(st["opt"])
            self.gen.set_state(st["gen"])
            self.iteration, self.seed_cursor = st["iteration"], st["seed_cursor"]
            self.nan_skipped, self.best = st["nan_skipped"], st["best"]
            torch.set_rng_state(st["torch_rng"])
        self.env_cfg = cfg.env.for_policy(self.policy.config)
        self.envs = {t: make_vector_env(self.env_cfg, t) for t in cfg.tasks}
        self.log = MetricsLogger(self.out)

    def close(self) -> None:
        for e in self.envs.values():
            e.close()
        self.log.close()

    # ---- one iteration ------------------------------------------------------------------------
    def rollout(self) -> Any:
        """Rollouts of this iteration for every task (with dynamic sampling if enabled)."""
        from tasks.robot.splits import split_seeds
        from vla_rl.algos.sampling import informative_groups
        from vla_rl.rollout.robot import RobotRollout, collect_rollouts

        cfg = self.cfg
        parts = []
        for task, env in self.envs.items():
            kept, rounds = [], 0
            while True:
                seeds = split_seeds("train", cfg.seeds_per_iter, self.seed_cursor)
                self.seed_cursor += cfg.seeds_per_iter
                r = collect_rollouts(env, self.policy, seeds, cfg.group_size, cfg.temperature, self.gen, task,
                                     group_offset=self.seed_cursor, pipelined=cfg.pipelined)
                r = r.select_trajectories(~r.lost)
                if cfg.dynamic_sampling:
                    r = r.select_trajectories(informative_groups(r.success.float(), r.group))
                kept.append(r)
                rounds += 1
                n = sum(len(k.group) for k in kept)
                if not cfg.dynamic_sampling or n >= cfg.seeds_per_iter * cfg.group_size or rounds > cfg.max_resample:
                    break
            parts.append(RobotRollout.concat(kept))
        return RobotRollout.concat(parts)

    def update(self, r: Any) -> dict[str, float]:
        """PPO epochs over the samples; returns averaged metrics."""
        from vla_rl.algos import POLICY_LOSSES, compute_advantages, kl_penalty
        from vla_rl.algos.advantages import group_stats
        from vla_rl.algos.losses import masked_mean

        cfg = self.cfg
        if r.num_samples == 0:
            return {"actor/skipped_empty": 1.0}
        rewards = r.success.float()
        adv_traj = compute_advantages(cfg.advantage, rewards, r.group)
        adv = adv_traj[r.traj]  # (S,)
        _, group_acc, _ = group_stats(rewards, r.group)  # per-sample group accuracy (NFT)
        group_acc = group_acc.float()
        loss_fn = POLICY_LOSSES.get(cfg.loss)
        sums: dict[str, float] = {}
        count = 0
        self.policy.train()
        for _ in range(cfg.epochs):
            perm = torch.randperm(r.num_samples, generator=self.gen)
            for start in range(0, r.num_samples, cfg.minibatch_size):
                idx = perm[start : start + cfg.minibatch_size]
                batch = r.batch(idx)
                logp, ent = self.policy.logprobs(batch, r.tokens[idx], cfg.temperature)
                mask = r.token_mask[idx]
                traj = r.traj[idx]
                extra = {"correct": r.success[traj], "group_accuracy": group_acc[traj],
                         "off_policy": torch.zeros(len(idx), dtype=torch.bool), "generator": self.gen}
                loss, metrics = loss_fn(logp, r.old_logp[idx], adv[idx], mask, agg_mode=cfg.agg_mode,
                                        **cfg.loss_kwargs, **extra)
                if self.ref is not None:
                    with torch.no_grad():
                        ref_logp, _ = self.ref.logprobs(batch, r.tokens[idx], cfg.temperature)
                    kl = masked_mean(kl_penalty(logp, ref_logp, cfg.kl_kind), mask)
                    loss = loss + cfg.kl_coef * kl
                    metrics["actor/kl_ref"] = kl.detach()
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                gnorm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
                if not (torch.isfinite(loss) and torch.isfinite(gnorm)):
                    self.nan_streak += 1
                    self.nan_skipped += 1
                    warnings.warn(f"non-finite loss or gradient (loss={float(loss.detach())}, grad norm="
                                  f"{float(gnorm)}): update skipped ({self.nan_streak} in a row)", stacklevel=2)
                    self.opt.zero_grad(set_to_none=True)
                    if self.nan_streak >= cfg.nan_patience:
                        raise NonFiniteUpdates(f"{self.nan_streak} consecutive non-finite updates: stopping "
                                               "(lower lr, check rewards and inputs)")
                    continue
                self.nan_streak = 0
                self.opt.step()
                metrics |= {"loss/pg": loss.detach(), "actor/entropy": masked_mean(ent.detach(), mask),
                            "actor/grad_norm": gnorm}
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
        out = {k: v / max(count, 1) for k, v in sums.items()}
        out["actor/nan_skipped"] = float(self.nan_skipped)
        return out

    def evaluate(self, split: str = "val", episodes: int | None = None) -> dict[str, dict[str, Any]]:
        from vla_rl.trainers.sft import evaluate_policy

        return evaluate_policy(self.policy, list(self.cfg.tasks), split, episodes or self.cfg.eval_episodes,
                               self.env_cfg)

    def save_state(self) -> None:
        """Policy + optimizer + RNG + counters, atomically, for ``resume``."""
        from vla_rl.utils.io import atomic_dir

        def write(tmp: Path) -> None:
            self.policy.save_pretrained(tmp / "policy", extra={"iteration": self.iteration})
            torch.save({"opt": self.opt.state_dict(), "gen": self.gen.get_state(), "iteration": self.iteration,
                        "seed_cursor": self.seed_cursor, "nan_skipped": self.nan_skipped, "best": self.best,
                        "torch_rng": torch.get_rng_state()}, tmp / "trainer.pt")

        atomic_dir(self.out / "state", write)

    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        t_start = time.time()
        env_steps = 0
        while self.iteration < cfg.iterations:
            t0 = time.time()
            r = self.rollout()
            t1 = time.time()
            m = self.update(r)
            t2 = time.time()
            self.iteration += 1
            env_steps += r.env_steps
            valid = ~r.lost
            m |= {"rollout/success": float(r.success[valid].float().mean()) if valid.any() else math.nan,
                  "rollout/trajectories": float(len(r.group)), "rollout/samples": float(r.num_samples),
                  "rollout/policy_entropy": float((r.entropy * r.token_mask).sum() / r.token_mask.sum().clamp(min=1)),
                  "perf/rollout_s": t1 - t0, "perf/update_s": t2 - t1,
                  "perf/env_steps_per_s": r.env_steps / max(t1 - t0, 1e-9), "perf/env_steps": float(env_steps)}
            if cfg.eval_episodes and self.iteration % cfg.eval_every == 0:
                res = self.evaluate()
                mean = float(np.mean([v["success"] for v in res.values()]))
                m |= {f"eval/{t}/success": v["success"] for t, v in res.items()} | {"eval/success": mean}
                if mean > self.best:  # model selection on validation seeds only
                    self.best = mean
                    self.policy.save_pretrained(self.out / "best", extra={"iteration": self.iteration,
                                                                         "val_success": mean})
            self.log.log(self.iteration, m)
            if self.console is not None:
                self.console.print(
                    f"iter {self.iteration}/{cfg.iterations}: success {m['rollout/success']:.2f} "
                    f"clip {m.get('actor/clip_frac', 0):.2f} kl {m.get('actor/ppo_kl', 0):.4f} "
                    f"entropy {m.get('actor/entropy', 0):.2f} ({t1 - t0:.0f}+{t2 - t1:.0f} s)"
                    + (f" val {m['eval/success']:.2f}" if "eval/success" in m else ""))
            if self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.iterations:
                self.save_state()
        self.policy.save_pretrained(self.out / "last", extra={"iteration": self.iteration})
        summary = {"iterations": self.iteration, "env_steps": env_steps, "wall_s": time.time() - t_start,
                   "best_val_success": self.best}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
