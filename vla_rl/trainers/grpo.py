"""The GRPO trainer, one for every modality: rollouts with temperature, outcome rewards, group advantages,
PPO-style epochs over the samples with any registered policy loss. A backend supplies what differs between
modalities: the policy class, the rollouts of one task (`RobotBackend` here: vector envs; text: the
language-model backend in `vla_rl.trainers.text_grpo`) and the held-out evaluation.

One iteration: ``sampling.seeds_per_iter`` train-split initial states (prompts) x ``sampling.group_size``
rollouts each, for every task in turn; the outcome is the reward; group advantages (`vla_rl.algos.ADVANTAGES`)
are spread over all action tokens of the trajectory's samples; lost episodes are dropped; with
``sampling.dynamic_sampling`` groups whose rewards are all equal are dropped and new seeds are rolled out (up to
``sampling.max_resample`` rounds). Checkpoints (policy + optimizer + RNG + counters) are written atomically every
``checkpoint.every`` iterations; ``checkpoint.resume=true`` continues from ``<out>/state``. With ``optim.ema`` > 0
a moving average of the weights is what validation scores and ``best`` / ``last`` hold; rollouts and updates stay
on the online policy.

The config groups its keys (`GRPOAlgoConfig`): the run's own at the top (init, out, tasks, iterations,
max_wall_s, seed, threads; env for robots), then ``sampling``, ``loss``, ``optim``, ``eval``, ``checkpoint`` and,
for robots, ``rollout``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from vla_rl.config import Config
from vla_rl.distributed.config import DistributedConfig
from vla_rl.envs import EnvConfig, VectorEnv, check_task_id
from vla_rl.policies.base import Policy, cpu_state
from vla_rl.rollout.base import Rollout
from vla_rl.trainers.backend import Backend
from vla_rl.trainers.curriculum import CurriculumConfig, RangeCurriculum, check_curriculum
from vla_rl.trainers.schedule import lr_factor
from vla_rl.utils.devices import DEVICE_PATTERN, resolve_device

if TYPE_CHECKING:
    from vla_rl.distributed.inference import RemotePolicy
    from vla_rl.distributed.learner import DataParallel
    from vla_rl.distributed.learner_actors import LearnerGroup
    from vla_rl.distributed.weights import WeightBoard
    from vla_rl.policies.vla.modeling_vla import VLAPolicy
    from vla_rl.rollout.robot import RobotRollout


class SamplingConfig(Config):
    """Which rollouts an iteration collects."""

    seeds_per_iter: int = Field(8, ge=1, description="initial states (prompts) per task per iteration")
    group_size: int = Field(8, ge=2, description="rollouts per initial state (G)")
    temperature: float = Field(1.6, gt=0, description="sampling temperature (SimpleVLA-RL: 1.6)")
    dynamic_sampling: bool = Field(False, description="drop all-equal groups and resample (DAPO)")
    max_resample: int = Field(2, ge=0, description="extra rounds of seeds per task that dynamic sampling may roll "
                              "out to fill the iteration")


class LossConfig(Config):
    """From rewards to the loss: the advantage estimator, the policy loss and its options, the KL penalty."""

    name: str = Field("ppo_clip", description="policy loss: ppo_clip, clip_cov, kl_cov, nft, luffy")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="options of the loss, checked against "
                                   "its signature (ppo_clip: eps_low 0.2, eps_high 0.28, dual_clip_c 3.0, ...)")
    advantage: str = Field("grpo", description="advantage estimator: grpo, drgrpo, rloo")
    agg_mode: str = Field("token-mean", description="loss aggregation over tokens and samples (`agg_loss`)")
    kl_coef: float = Field(0.0, ge=0, description="KL-to-reference loss coefficient (0: no reference model)")
    kl_kind: str = Field("k3", description="KL estimator of that penalty: k1, k2, k3")
    negative_scale: float = Field(1.0, ge=0, le=1, description="multiplies negative advantages: < 1 damps the "
                                  "push-down on failed episodes' tokens (most samples when success is rare), "
                                  "which otherwise raises the entropy of a freshly cloned policy")
    equal_trajectory_weight: bool = Field(False, description="scale each sample's advantage by (mean samples per "
                                          "trajectory) / (its trajectory's samples): every episode weighs the same "
                                          "(failed episodes run to the step limit and would otherwise dominate)")

    @field_validator("advantage")
    @classmethod
    def _adv(cls, v: str) -> str:
        from vla_rl.algos import ADVANTAGES

        ADVANTAGES.get(v)
        return v

    @field_validator("name")
    @classmethod
    def _loss(cls, v: str) -> str:
        from vla_rl.algos import POLICY_LOSSES

        POLICY_LOSSES.get(v)
        return v

    @model_validator(mode="after")
    def _options_known(self) -> LossConfig:
        from vla_rl.algos.losses import check_loss_options

        check_loss_options(self.name, self.kwargs)
        return self


class OptimConfig(Config):
    """The optimiser, its learning-rate schedule and the PPO epochs over each iteration's samples."""

    lr: float = Field(1e-4, gt=0, description="AdamW learning rate (after the warmup)")
    warmup_iterations: int = Field(0, ge=0, description="linear learning-rate warmup over the first iterations "
                                   "(Adam's first steps move a freshly cloned policy far: PPO KL ~1 nat)")
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description="after the warmup: constant, or "
                                                       "a cosine decay to min_lr_ratio x lr at the last iteration")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="the cosine schedule's final lr / lr")
    lr_decay_fraction: float = Field(1.0, gt=0, le=1, description="the cosine decays over this last fraction of "
                                     "the run and holds the full lr before it (1: the whole run after the "
                                     "warmup; 0.3: warmup-stable-decay)")
    lr_clock: Literal["iterations", "budget"] = Field("iterations", description="what the lr schedule's progress "
                                                       "counts: iterations out of `iterations`, or (budget) also "
                                                       "the seconds of max_wall_s spent, whichever is further, "
                                                       "so that a run the budget ends early still decays (its lr "
                                                       "then depends on the machine's speed; without max_wall_s: "
                                                       "iterations)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="gradient norm clip")
    epochs: int = Field(2, ge=1, description="passes over each iteration's samples")
    minibatch_size: int = Field(128, ge=1, description="samples per gradient step")
    micro_batch_size: int | None = Field(None, ge=1, description="samples forwarded and backpropagated at a time "
                                         "within a minibatch, their gradients summed before its one step: the "
                                         "same step to float rounding, with the activations of this many samples "
                                         "held instead of the whole minibatch's (veRL's ppo_micro_batch_size). "
                                         "None: the whole minibatch at once. Needs a loss that sums over rows "
                                         "(ppo_clip, nft, luffy), no target_kl and one learner process")
    target_kl: float | None = Field(None, gt=0, description="stop the iteration's epochs once the mean KL to the "
                                    "rollout policy (over the computed samples: PPO clip skips zero-advantage ones) "
                                    "exceeds 1.5x this (SB3's target_kl); None: never")
    max_update_samples: int | None = Field(None, ge=1, description="samples drawn (without replacement) from "
                                           "each iteration's rollouts for its update; None: all of them")
    freeze: list[str] = Field(default_factory=list, description="parameter-name prefixes kept fixed (e.g. "
                              "[vision] for the image encoder): not updated, no gradients computed")
    nan_patience: int = Field(3, ge=1, description="stop after this many consecutive non-finite updates")
    ema: float = Field(0.0, ge=0, lt=1, description="decay per iteration of an exponential moving average of the "
                       "policy's weights (0: off). On: rollouts and updates use the online policy; validation, "
                       "best/ and last/ the average")


class LoRAConfig(Config):
    """LoRA adapters (peft) instead of full fine-tuning (`vla_rl.policies.adapters`)."""

    rank: int = Field(0, ge=0, description="0: no adapters (every unfrozen weight learns); > 0: LoRA adapters of "
                      "this rank on the linear layers named in target_modules, every other weight frozen but "
                      "modules_to_save")
    alpha: float = Field(16.0, gt=0, description="the adapters' scale is alpha / rank")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' input")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1, description="the linear layers that get adapters, by the last part of their name (the "
        "default: a Llama LM's attention and MLP projections)")
    modules_to_save: list[str] = Field(default_factory=list, description="parameter-name prefixes trained in "
                                       "full beside the adapters (e.g. OFT's action_head)")


class ModelConfig(Config):
    """How the policy is held for training: precision, activation checkpointing, LoRA. The defaults train every
    weight in float32, as the tiny presets do; a 7B policy on one GPU needs bfloat16 and LoRA or checkpointing."""

    dtype: Literal["float32", "bfloat16"] = Field("float32", description="bfloat16: forward passes under "
                                                  "torch.autocast in bfloat16 and frozen weights stored in it; the "
                                                  "trainable weights and AdamW's moments stay float32")
    activation_checkpointing: bool = Field(False, description="recompute the LM's activations in the backward "
                                           "(less memory, ~1.3x the update's compute)")
    lora: LoRAConfig = Field(default_factory=LoRAConfig)


class EvalConfig(Config):
    """Validation on held-out seeds, which chooses ``best``."""

    every: int = Field(5, ge=1, description="validate every this many iterations, and at the last")
    episodes: int = Field(50, ge=0, description="validation episodes per task (greedy); 0: none")


class CheckpointConfig(Config):
    """The resumable state in ``<out>/state`` and what to do with a previous run in ``out``."""

    every: int = Field(5, ge=1, description="write the state every this many iterations, and at the last")
    resume: bool = Field(False, description="continue the run in out from its state")
    overwrite: bool = Field(False, description="start afresh in an out that holds a previous run, deleting it "
                            "(otherwise such an out is refused unless resume=true)")

    @model_validator(mode="after")
    def _resume_or_overwrite(self) -> CheckpointConfig:
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: resume=true continues the run in out, "
                             "overwrite=true deletes it")
        return self


class GRPOAlgoConfig(Config):
    """The GRPO keys shared by every modality (robot: `GRPOConfig`; text: `vla_rl.trainers.text_grpo`): the run's own
    keys at the top, the rest grouped."""

    init: str = Field(..., description="checkpoint folder to start from (e.g. runs/sft/best)")
    out: str = Field("runs/grpo", description="run folder")
    tasks: list[str] = Field(..., min_length=1, description="the tasks rolled out each iteration, in turn")
    iterations: int = Field(20, ge=1, description="rollout + update iterations")
    max_wall_s: float | None = Field(None, gt=0, description="time budget of train() in seconds: stop after the "
                                     "iteration whose successor (with a validation) would end past it; that "
                                     "iteration is validated. None: run all iterations")
    seed: int = Field(0, description="seed of the trainer's generator (sampling, minibatch order)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="where the policy acts and learns: auto (the "
                        "GPU when torch sees one, else the CPU), cpu, cuda or cuda:N; the losses over token tensors "
                        "and the trainer's generator stay on the CPU")
    model: ModelConfig = Field(default_factory=ModelConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)

    @model_validator(mode="after")
    def _micro_batches_add_up(self) -> GRPOAlgoConfig:
        from vla_rl.algos.losses import ROW_ADDITIVE

        if self.optim.micro_batch_size is None:
            return self
        if self.loss.name not in ROW_ADDITIVE:
            raise ValueError(f"optim.micro_batch_size: the {self.loss.name} loss takes statistics of the whole "
                             f"minibatch, so its parts would not add up to it; use one of {', '.join(ROW_ADDITIVE)} "
                             "or set optim.micro_batch_size=null (and bound memory with optim.minibatch_size)")
        if self.optim.target_kl is not None:
            raise ValueError("optim.micro_batch_size with optim.target_kl: the KL early stop reads the whole "
                             "minibatch's KL before its step; set one of them to null")
        return self

    @model_validator(mode="after")
    def _lora_without_ema(self) -> GRPOAlgoConfig:
        if self.model.lora.rank and self.optim.ema > 0:
            raise ValueError("optim.ema averages every weight, model.lora trains adapters only: set optim.ema=0 "
                             "with LoRA (or model.lora.rank=0)")
        return self

    def backend(self) -> Backend:
        """The modality's rollout backend (see `RobotBackend`)."""
        raise NotImplementedError

    def run(self, console: Any = None) -> dict[str, Any]:
        """Train; returns the run's summary."""
        trainer = GRPOTrainer(self, console)
        try:
            s = trainer.train()
        finally:
            trainer.close()
        if console is not None:
            console.print(f"GRPO done: {s['iterations']} iterations in {s['wall_s']:.0f} s"
                          + (f", {s['env_steps']} env steps" if s.get("env_steps") else "")
                          + (f"; best val success {s['best_val_success']:.1%}" if s["best_val_success"] >= 0
                             else "; no validation"))
        return s


class RobotRolloutConfig(Config):
    """How the robot rollouts act: exploration noise, greedy anchors, receding horizon, pipelining."""

    pipelined: bool = Field(False, description="overlap simulation of one half of the envs with inference "
                            "for the other (needs >= 2 env workers)")
    noise_correlation: float = Field(0.0, ge=0, le=1, description="AR(1) correlation of the sampling quantiles "
                                     "from one control step to the next (0: independent draws; 1: one quantile "
                                     "per action dimension for the whole episode), `QuantileNoise`")
    sample_mass: float = Field(1.0, gt=0, le=1, description="draw each action token from the central fraction "
                               "of its distribution over the ordered bins (quantile in 0.5 +- sample_mass / 2; "
                               "1: plain sampling), `central_quantiles`")
    anchors: int = Field(0, ge=0, description="rollouts per group that act greedily (each token's median, "
                         "quantile 0.5) instead of sampling, scored in the group like the others: the update then "
                         "moves the greedy behaviour towards the sampled rollouts that beat it (< sampling.group_size)")
    n_action_steps: int | None = Field(None, ge=1, description="steps of each decoded chunk executed before the "
                                       "policy is called again (receding horizon; the unexecuted steps' tokens get "
                                       "no credit); None: the init checkpoint's")


class GRPOConfig(GRPOAlgoConfig):
    """`vla-rl train`: GRPO on robot tasks from an SFT checkpoint."""

    type: Literal["vla_grpo"] = "vla_grpo"
    tasks: list[str] = Field(..., min_length=1, description="robot task ids")
    env: EnvConfig = Field(default_factory=lambda: EnvConfig(num_envs=16))
    rollout: RobotRolloutConfig = Field(default_factory=RobotRolloutConfig)
    curriculum: CurriculumConfig = Field(default_factory=CurriculumConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)

    @field_validator("tasks")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        return [check_task_id(t) for t in v]

    @model_validator(mode="after")
    def _anchors_leave_samples(self) -> GRPOConfig:
        if self.rollout.anchors >= self.sampling.group_size:
            raise ValueError(f"rollout.anchors ({self.rollout.anchors}) must be below sampling.group_size "
                             f"({self.sampling.group_size}): a group needs sampled rollouts to compare the greedy "
                             "one with")
        return self

    @model_validator(mode="after")
    def _micro_batches_on_one_learner(self) -> GRPOConfig:
        if self.optim.micro_batch_size is not None and self.distributed.learner_ranks > 1:
            raise ValueError("optim.micro_batch_size with distributed.learner_ranks > 1: each rank already forwards "
                             "only its shard of a minibatch; set optim.micro_batch_size=null (or add ranks)")
        return self

    @model_validator(mode="after")
    def _curriculum_fits_tasks(self) -> GRPOConfig:
        check_curriculum(self.curriculum, self.tasks)
        return self

    @model_validator(mode="after")
    def _env_fits_backend(self) -> GRPOConfig:
        self.distributed.env_config(self.env)  # refuses an env.vector_env the backend would replace
        return self

    def backend(self) -> RobotBackend:
        return RobotBackend(self)


class RobotBackend:
    """Robot rollouts for the trainer: one vector env per task, started once the policy is loaded (the envs
    render at the policy's resolution and cameras). With a curriculum a task is rolled out on its current rung
    (`RangeCurriculum`), in a vector env of its own that is replaced at each promotion; validation uses the task's."""

    def __init__(self, cfg: GRPOConfig) -> None:
        self.cfg = cfg
        self.envs: dict[str, VectorEnv] = {}
        self.rung_envs: dict[str, tuple[str, VectorEnv]] = {}  # task -> (its rung's env id, vector env)
        self.curriculum = RangeCurriculum(cfg.curriculum, cfg.tasks) if cfg.curriculum.spreads else None
        self.env_cfg: EnvConfig = cfg.distributed.env_config(cfg.env)  # local worker processes or Ray actors
        self.episodes_rerun = 0  # since the last `metrics`

    def load_policy(self, path: str | Path) -> VLAPolicy:
        from vla_rl.policies.factory import load_robot_policy

        policy = load_robot_policy(path)  # our VLA, or an OpenVLA / OpenVLA-OFT folder (by its config.json)
        if self.cfg.rollout.n_action_steps is not None:
            policy.set_n_action_steps(self.cfg.rollout.n_action_steps)
        return policy

    def start(self, policy: Policy) -> None:
        from vla_rl.envs import make_vector_env

        self.env_cfg = self.env_cfg.for_policy(policy.config)
        self.envs = {t: make_vector_env(self.env_cfg, t) for t in self.cfg.tasks}

    def rollout(self, policy: Policy, task: str, seeds: list[int], generator: torch.Generator,
                group_offset: int) -> RobotRollout:
        from vla_rl.rollout.robot import collect_rollouts

        threads = torch.get_num_threads()
        if self.cfg.rollout.pipelined:  # half the cores infer, the other half simulate (bench/results/rollout.json)
            torch.set_num_threads(max(1, threads // 2))
        try:
            cfg = self.cfg.rollout
            r = collect_rollouts(self.env_for(task), policy, seeds, self.cfg.sampling.group_size,
                                 self.cfg.sampling.temperature, generator, task, group_offset=group_offset,
                                 pipelined=cfg.pipelined, noise_correlation=cfg.noise_correlation,
                                 sample_mass=cfg.sample_mass, anchors=cfg.anchors)
            self.episodes_rerun += r.episodes_rerun
        finally:
            torch.set_num_threads(threads)  # the update takes every thread
        if self.curriculum is not None:
            self.curriculum.record(task, r.success[~r.lost])
        return r

    def env_for(self, task: str) -> VectorEnv:
        """The vector env ``task`` is rolled out in now: its own, or its curriculum rung's (built on first use, the
        previous rung's closed)."""
        from vla_rl.envs import make_vector_env

        env_id = self.curriculum.task_id(task) if self.curriculum is not None else task
        if env_id == task:
            return self.envs[task]
        held = self.rung_envs.get(task)
        if held is None or held[0] != env_id:
            if held is not None:
                held[1].close()
            self.rung_envs[task] = (env_id, make_vector_env(self.env_cfg, env_id))
        return self.rung_envs[task][1]

    def evaluate(self, policy: Policy, split: str, episodes: int) -> dict[str, dict[str, Any]]:
        from vla_rl.evaluation import evaluate_policy

        return evaluate_policy(policy, list(self.cfg.tasks), split, episodes, self.env_cfg, envs=self.envs)

    def metrics(self) -> dict[str, float]:
        """Env faults survived since the last call, logged only when there were some: episodes re-run after their
        env worker was lost, and the workers replaced so far. Memory where the vector env reports it (Ray's,
        `RayVectorEnv.memory_stats`): the largest env actor RSS over the tasks and the object store's use, in MB."""
        m: dict[str, float] = {}
        if self.episodes_rerun:
            m["rollout/episodes_rerun"] = float(self.episodes_rerun)
        restarts = sum(getattr(e, "restarts", 0) for e in self.envs.values())
        if restarts:
            m["perf/env_restarts"] = float(restarts)
        if self.curriculum is not None:
            m |= self.curriculum.metrics()
        for e in self.envs.values():
            if hasattr(e, "memory_stats"):
                for k, v in e.memory_stats().items():  # the object store is the cluster's: the same for each task
                    m[f"perf/{k}"] = max(m.get(f"perf/{k}", 0.0), round(float(v), 1))
        self.episodes_rerun = 0
        return m

    def state_dict(self) -> dict[str, Any]:
        return {"curriculum": self.curriculum.state_dict()} if self.curriculum is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.curriculum is not None and "curriculum" in state:
            self.curriculum.load_state_dict(state["curriculum"])

    def close(self) -> None:
        for e in [*self.envs.values(), *(env for _, env in self.rung_envs.values())]:
            e.close()


def frozen_split(policy: torch.nn.Module, prefixes: list[str]) -> list[torch.nn.Parameter]:
    """Turn off gradients of the parameters whose names start with one of ``prefixes``; returns the rest.
    A prefix that matches nothing is an error (a typo would silently train everything)."""
    named = dict(policy.named_parameters())
    for p in prefixes:
        hits = [n for n in named if n == p or n.startswith(p + ".")]
        if not hits:
            tops = sorted({n.split(".")[0] for n in named})
            raise ValueError(f"freeze: no parameter under {p!r}; top-level modules: {', '.join(tops)}")
        for n in hits:
            named[n].requires_grad_(False)
    return [t for t in named.values() if t.requires_grad]


class RunningMeans:
    """Means of metrics over an iteration's gradient steps; a step may count a metric without a value (as 0)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, Any]) -> None:
        for k, v in metrics.items():
            self.sums[k], self.counts[k] = self.sums.get(k, 0.0) + float(v), self.counts.get(k, 0) + 1

    def count(self, *keys: str) -> None:
        for k in keys:
            self.sums[k], self.counts[k] = self.sums.get(k, 0.0), self.counts.get(k, 0) + 1

    def result(self) -> dict[str, float]:
        return {k: v / self.counts[k] for k, v in self.sums.items()}


class NonFiniteUpdates(RuntimeError):
    """Too many consecutive updates with a NaN/inf loss or gradient."""


class GRPOTrainer:
    """Holds the policy, optimizer and rollout backend of one GRPO run (see the module docstring). The
    algorithm (rollout rounds, dynamic sampling, advantages, PPO epochs, NaN guard, checkpoints, model
    selection) is the same for every modality; the backend supplies the policy class, the rollouts and the
    held-out evaluation."""

    def __init__(self, cfg: GRPOAlgoConfig, console: Any = None, learner_only: bool = False) -> None:
        """``learner_only``: a learner rank's trainer (`vla_rl.distributed.learner_actors`): the policy, optimizer
        and loss for `update`, no envs, no run folder."""
        from vla_rl.distributed.weights import InferenceWeights
        from vla_rl.trainers.metrics import MetricsLogger

        self.cfg = cfg
        self.console = console
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.backend: Backend = cfg.backend()
        self.out = Path(cfg.out)
        state_dir = self.out / "state"
        resuming = cfg.checkpoint.resume and (state_dir / "trainer.pt").is_file() and not learner_only
        if learner_only:
            pass
        elif cfg.checkpoint.overwrite:
            shutil.rmtree(self.out, ignore_errors=True)
        elif not cfg.checkpoint.resume and (self.out / "metrics.jsonl").is_file():
            raise ValueError(f"out {str(self.out)!r} already holds a run (metrics.jsonl); pass checkpoint.resume=true "
                             "to continue it, checkpoint.overwrite=true to replace it, or choose another out")
        self.device = resolve_device(cfg.device)
        lora = cfg.model.lora.rank > 0  # a resumed LoRA run: the init's frozen weights, then its saved adapters
        self.policy: Policy = self.backend.load_policy(state_dir / "policy" if resuming and not lora else cfg.init)
        trainable = self.prepare(self.policy)
        if resuming and lora:
            from vla_rl.policies.adapters import load_adapter_state

            load_adapter_state(self.policy, torch.load(state_dir / "adapters.pt", weights_only=True))
        self.ref: Policy | None = None
        if cfg.loss.kl_coef > 0:
            self.ref = self.frozen(self.backend.load_policy(cfg.init))
        self.ema: Policy | None = None
        if cfg.optim.ema > 0:  # starts at the initial policy; a resumed run reloads its average
            self.ema = self.frozen(self.backend.load_policy(state_dir / "ema" if resuming else cfg.init))
        self.opt = torch.optim.AdamW(trainable, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay,
                                     betas=(0.9, 0.95))
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.iteration = 0
        self.seed_cursor = 0
        self.nan_streak = 0
        self.nan_skipped = 0
        self.best = -1.0
        self.totals: dict[str, int] = {}
        self.t_start = time.time()  # train() restarts the clock
        self.out_of_time = False  # set by step() when the next iteration would overrun max_wall_s
        self.durations: list[float] = []  # seconds of each iteration of this process, validation excluded
        self.eval_s: float | None = None  # seconds of the last validation
        self.skip_zero_advantage = True  # False: forward every sample (the reference the skip is tested against)
        self.dp: DataParallel | None = None  # set: update() takes part in a data-parallel learner (its rows only)
        if resuming:
            st = torch.load(state_dir / "trainer.pt", weights_only=False)
            self.opt.load_state_dict(st["opt"])
            self.gen.set_state(st["gen"])
            self.iteration, self.seed_cursor = st["iteration"], st["seed_cursor"]
            self.nan_skipped, self.best, self.totals = st["nan_skipped"], st["best"], st["totals"]
            self.backend.load_state_dict(st.get("backend", {}))
            torch.set_rng_state(st["torch_rng"])
        # the weights rollouts act with carry the number of updates behind them; checked before every rollout
        self.inference = InferenceWeights(self.policy, self.iteration)
        self.learners: LearnerGroup | None = None  # learner ranks as Ray actors (distributed.learner_ranks > 1)
        self.board: WeightBoard | None = None  # where the weights are published to (with inference actors)
        self.learner_retries = 0  # the learner actors' retries counted by the last logged iteration
        self.log: MetricsLogger | None = None
        if learner_only:
            return
        dist = getattr(cfg, "distributed", None)
        if dist is not None and dist.learner_ranks > 1:
            from vla_rl.distributed.learner_actors import LearnerGroup

            self.learners = LearnerGroup(cfg)
        self.remote: RemotePolicy | None = None  # rollout inference on Ray actors (distributed.inference_actors)
        if dist is not None and dist.inference_actors:
            from vla_rl.distributed.inference import RemotePolicy
            from vla_rl.distributed.weights import WeightBoard

            self.board = WeightBoard()
            self.remote = RemotePolicy(self.policy, dist, cfg.threads, cfg.model.dtype)
            self.remote.use(self.board.publish(cpu_state(self.policy), self.iteration))
        self.backend.start(self.policy)
        self.log = MetricsLogger(self.out)

    def prepare(self, policy: Policy) -> list[torch.nn.Parameter]:
        """Set ``policy`` up for training as ``model`` says (LoRA adapters, frozen prefixes, frozen weights in its
        dtype, activation checkpointing) on the run's device; returns the trainable parameters."""
        from vla_rl.policies import adapters

        m = self.cfg.model
        if m.lora.rank:
            with torch.random.fork_rng(devices=[]):  # the adapters' random init: the run's seed, not the global RNG's
                torch.manual_seed(self.cfg.seed)
                adapters.add_lora(policy, m.lora.rank, m.lora.alpha, m.lora.dropout, m.lora.target_modules,
                                  m.lora.modules_to_save)
        trainable = frozen_split(policy, self.cfg.optim.freeze)
        if m.dtype != "float32":
            adapters.store_frozen_in(policy, getattr(torch, m.dtype))
        policy.to(self.device)
        if m.activation_checkpointing:
            adapters.set_activation_checkpointing(policy, True)
        return trainable

    def frozen(self, policy: Policy) -> Policy:
        """A policy that never learns (the KL reference, the weight average) on the run's device, in its dtype."""
        from vla_rl.policies.adapters import store_frozen_in

        policy.requires_grad_(False)
        if self.cfg.model.dtype != "float32":
            store_frozen_in(policy, getattr(torch, self.cfg.model.dtype))
        return policy.to(self.device).eval()

    def autocast(self) -> torch.autocast:
        """Forward passes in the run's dtype (``model.dtype``; a no-op in float32)."""
        dtype = getattr(torch, self.cfg.model.dtype)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype != torch.float32)

    def save_policy(self, policy: Policy, path: Path, extra: dict[str, Any]) -> None:
        """``policy``'s checkpoint folder: plain weights (LoRA adapters merged in), loadable without peft."""
        from vla_rl.policies.adapters import merged

        with merged(policy):
            policy.save_pretrained(path, extra=extra)

    def close(self) -> None:
        if self.learners is not None:
            self.learners.close()
        if self.remote is not None:
            self.remote.close()
        self.backend.close()
        if self.log is not None:
            self.log.close()

    # ---- one iteration ------------------------------------------------------------------------
    def rollout(self) -> Rollout:
        """Rollouts of this iteration for every task (with dynamic sampling if enabled)."""
        from vla_rl.algos.sampling import informative_groups
        from vla_rl.splits import split_seeds

        cfg = self.cfg.sampling
        self.inference.require(self.iteration)  # never roll out on stale weights
        if self.remote is not None:
            self.remote.require(self.iteration)
        policy = self.remote or self.policy
        parts = []
        for task in self.cfg.tasks:
            kept, rounds = [], 0
            while True:
                seeds = split_seeds("train", cfg.seeds_per_iter, self.seed_cursor)
                self.seed_cursor += cfg.seeds_per_iter
                with self.autocast():
                    r = self.backend.rollout(policy, task, seeds, self.gen, self.seed_cursor)
                r = r.select_trajectories(~r.lost)
                if cfg.dynamic_sampling:
                    r = r.select_trajectories(informative_groups(r.reward, r.group))
                kept.append(r)
                rounds += 1
                n = sum(len(k.group) for k in kept)
                if not cfg.dynamic_sampling or n >= cfg.seeds_per_iter * cfg.group_size or rounds > cfg.max_resample:
                    break
            parts.append(type(kept[0]).concat(kept))
        return type(parts[0]).concat(parts)

    def learn(self, r: Rollout) -> dict[str, float]:
        """This iteration's `update` (in this process, or on the learner actors, which keep the optimizer's state
        until `save_state` gathers it), then the new weights' version for the rollouts, published to the object
        store for inference actors."""
        if self.learners is None:
            m = self.update(r)  # in place
        else:  # the ranks keep the policy and optimizer; the driver's policy gets the new trainable weights
            m = self.learners.learn(self, r)
        self.inference.version = self.iteration + 1
        if self.remote is not None:
            assert self.board is not None
            self.remote.use(self.board.publish(cpu_state(self.policy), self.iteration + 1))
        return m

    def update(self, r: Rollout, lr: float | None = None) -> dict[str, float]:
        """PPO epochs over the samples (``epochs`` passes, minibatches of ``minibatch_size``); returns the
        metrics averaged over the gradient steps. ``lr``: this iteration's learning rate (None: the schedule's)."""
        from vla_rl.algos.losses import ZERO_ADVANTAGE_SKIPPABLE, informative_rows

        cfg = self.cfg
        if r.num_samples == 0:
            return {"actor/skipped_empty": 1.0}
        if self.dp is not None:  # every rank: the same rollout, the minibatches of rank 0's generator
            self.dp.begin_update(self.gen, r.tokens, r.old_logp)
        adv, group_acc = self.advantages(r)
        # Samples with a zero advantage (all-equal groups) add exactly nothing to the PPO-clip loss or its
        # gradient: skip their forward and backward, rescale the loss, take the same step (tested).
        skip_zero = self.skip_zero_advantage and cfg.loss.name in ZERO_ADVANTAGE_SKIPPABLE and self.ref is None
        means = RunningMeans()
        updates = 0
        self.policy.train()
        lr = self.set_lr(lr)
        n = min(r.num_samples, cfg.optim.max_update_samples or r.num_samples)
        subset = torch.randperm(r.num_samples, generator=self.gen)[:n]  # every trajectory's steps alike
        stopped = False
        for idx in self.minibatches(subset):
            factor = 1.0
            if skip_zero:
                keep, factor = informative_rows(adv[idx], r.token_mask[idx], cfg.loss.agg_mode)
                if not keep.any():  # a zero gradient: Adam still steps (its moments decay), as it would have
                    self.zero_gradient_step()
                    means.count("loss/pg", "actor/grad_norm")
                    updates += 1
                    continue
                idx = idx[keep]
            computed = self.accumulate(r, idx, adv, group_acc, factor)
            if computed is None:  # the policy has moved far enough from the one that collected the data
                stopped = True
                break
            loss, metrics = computed
            gnorm = self.optimiser_step(loss)
            if gnorm is None:  # non-finite: skipped
                continue
            means.add(metrics | {"loss/pg": loss, "actor/grad_norm": gnorm})
            updates += 1
        out = means.result()  # ratio and entropy metrics: computed samples only
        out["actor/zero_advantage_frac"] = float((adv[subset] == 0).float().mean())
        out["actor/nan_skipped"] = float(self.nan_skipped)
        out["actor/kl_early_stop"] = float(stopped)
        out["actor/updates"] = float(updates)
        out["actor/lr"] = lr
        return out

    def advantages(self, r: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample advantages float (S,) (rewards -> group advantages per trajectory -> spread over the
        trajectory's samples, negatives x ``negative_scale``) and each trajectory's group accuracy float (N,)
        (NFT's ``r_q``)."""
        from vla_rl.algos import compute_advantages
        from vla_rl.algos.advantages import group_stats, sample_advantages

        cfg = self.cfg.loss
        adv_traj = compute_advantages(cfg.advantage, r.reward, r.group)
        adv = sample_advantages(adv_traj, r.traj, cfg.equal_trajectory_weight)  # (S,)
        if cfg.negative_scale != 1.0:
            adv = torch.where(adv < 0, adv * cfg.negative_scale, adv)
        _, group_acc, _ = group_stats(r.reward, r.group)
        return adv, group_acc.float()

    def set_lr(self, lr: float | None = None) -> float:
        """Set this iteration's learning rate (``lr``; None: the schedule of `lr_factor`) on every parameter group;
        returns it."""
        cfg, budget = self.cfg.optim, self.cfg.max_wall_s
        clock = (time.time() - self.t_start) / budget if cfg.lr_clock == "budget" and budget else None
        if lr is None:
            lr = cfg.lr * lr_factor(self.iteration, self.cfg.iterations, cfg.warmup_iterations, cfg.lr_schedule,
                                    cfg.min_lr_ratio, cfg.lr_decay_fraction, clock)
        for group in self.opt.param_groups:
            group["lr"] = lr
        return lr

    def minibatches(self, subset: torch.Tensor) -> Iterator[torch.Tensor]:
        """Sample indices of each minibatch: ``epochs`` passes over ``subset``, each in a fresh random order (drawn
        from the trainer's generator as the pass starts)."""
        n, cfg = len(subset), self.cfg.optim
        for _ in range(cfg.epochs):
            perm = subset[torch.randperm(n, generator=self.gen)]
            for start in range(0, n, cfg.minibatch_size):
                yield perm[start : start + cfg.minibatch_size]

    def accumulate(self, r: Rollout, idx: torch.Tensor, adv: torch.Tensor, group_acc: torch.Tensor, factor: float
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """Zero the gradients, then the forward and backward of minibatch ``idx`` (its policy loss x ``factor``),
        in parts of ``micro_batch_size`` samples whose gradients add up. Returns the minibatch's loss (detached) and
        metrics (token means: the parts' weighted by their tokens, entropy included), or None for the KL early
        stop (`minibatch_loss`)."""
        from vla_rl.algos.losses import row_share

        self.opt.zero_grad(set_to_none=True)
        micro = self.cfg.optim.micro_batch_size
        parts = [idx] if micro is None or len(idx) <= micro else list(idx.split(micro))
        mask = r.token_mask[idx]
        total = torch.zeros(())
        metrics: dict[str, torch.Tensor] = {}
        for part, rows in zip(parts, torch.arange(len(idx)).split(len(parts[0])), strict=True):  # rows: of ``idx``
            share = 1.0 if len(parts) == 1 else row_share(rows, mask, self.cfg.loss.agg_mode)
            tokens = 1.0 if len(parts) == 1 else row_share(rows, mask, "token-mean")
            computed = self.minibatch_loss(r, part, adv, group_acc, factor * share, tokens)
            if computed is None:
                return None
            loss, part_metrics, entropy = computed
            self.backward(loss)
            total = total + loss.detach()
            for k, v in (part_metrics | {"actor/entropy": entropy}).items():
                metrics[k] = metrics.get(k, 0.0) + tokens * v.detach()
        return total, metrics

    def minibatch_loss(self, r: Rollout, idx: torch.Tensor, adv: torch.Tensor, group_acc: torch.Tensor, factor: float,
                       kl_factor: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor] | None:
        """The loss of samples ``idx`` (their forward, the policy loss x ``factor``, + ``kl_coef`` x
        ``kl_factor`` x the KL to the reference policy), its metrics and the mean entropy of their tokens; None when
        the mean KL to the rollout policy is past 1.5 x ``target_kl`` (SB3's early stop). Data-parallel: this rank
        forwards its shard of ``idx``, and the loss sees every row of the minibatch, only this rank's with a
        gradient (`DataParallel`)."""
        from vla_rl.algos import POLICY_LOSSES, kl_penalty
        from vla_rl.algos.losses import masked_mean

        cfg, mask = self.cfg.loss, r.token_mask[idx]
        logp, ent = self.logprobs(self.policy, r, idx)
        traj = r.traj[idx]
        off = r.off_policy[traj] if r.off_policy is not None else torch.zeros(len(idx), dtype=torch.bool)
        loss, metrics = POLICY_LOSSES.get(cfg.name)(
            logp, r.old_logp[idx], adv[idx], mask, agg_mode=cfg.agg_mode, **cfg.kwargs,
            correct=r.success[traj], group_accuracy=group_acc[traj], off_policy=off, generator=self.gen)
        loss = loss * factor
        kl_now = metrics.get("actor/ppo_kl")
        target_kl = self.cfg.optim.target_kl
        if target_kl is not None and kl_now is not None and float(kl_now) > 1.5 * target_kl:
            return None
        if self.ref is not None:
            with torch.no_grad():
                ref_logp, _ = self.logprobs(self.ref, r, idx)
            kl = masked_mean(kl_penalty(logp, ref_logp, cfg.kl_kind), mask)
            loss = loss + cfg.kl_coef * kl_factor * kl
            metrics["actor/kl_ref"] = kl.detach()
        return loss, metrics, masked_mean(ent.detach(), mask)

    def logprobs(self, policy: Policy, r: Rollout, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropies (B, K) of the tokens of samples ``idx`` under ``policy`` at the sampling
        temperature. Data-parallel: this rank forwards its shard; the other ranks' rows arrive without gradient."""
        temperature = self.cfg.sampling.temperature
        if self.dp is None:
            with self.autocast():
                logp, ent = policy.logprobs(r.batch(idx), r.tokens[idx], temperature)
            return logp.cpu(), ent.cpu()  # the loss runs on the CPU; the gradient flows back to the policy's device
        mine = self.dp.shard(idx)
        if len(mine) or self.dp.sharded:  # FSDP: every rank runs the collectives of a forward (an empty shard: one
            rows = mine if len(mine) else idx[:1]  # row, dropped, so its backward adds zeros)
            with self.autocast():
                local = tuple(x[: len(mine)] for x in policy.logprobs(r.batch(rows), r.tokens[rows], temperature))
        else:  # fewer rows than ranks: nothing to forward here, (0, K) each
            local = (r.old_logp[mine].to(self.device), r.old_logp[mine].to(self.device))
        logp, ent = self.dp.gather_rows(len(idx), *local)
        return logp.cpu(), ent.cpu()

    def backward(self, loss: torch.Tensor) -> None:
        """Add the gradient of ``loss`` to the parameters'. Data-parallel: the gradient is summed over the ranks
        (once per minibatch: `accumulate` forwards it whole there)."""
        if self.dp is None:
            loss.backward()
        else:
            self.dp.backward(loss, (p for g in self.opt.param_groups for p in g["params"]))

    def optimiser_step(self, loss: torch.Tensor) -> torch.Tensor | None:
        """Clip the gradient norm (after `backward`) to ``grad_clip``, step; returns the norm before clipping. A
        non-finite loss or norm skips the step (None) and stops the run after ``nan_patience`` in a row.
        Data-parallel: the gradient was summed over the ranks before the clip, so every rank takes the same step."""
        cfg = self.cfg.optim
        if self.dp is None:
            gnorm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.grad_clip)
        else:  # the norm of the whole gradient (FSDP: over every rank's shard)
            gnorm = self.dp.clip_grad_norm(self.policy.parameters(), cfg.grad_clip)
        if not (torch.isfinite(loss) and torch.isfinite(gnorm)):
            self.nan_streak += 1
            self.nan_skipped += 1
            warnings.warn(f"non-finite loss or gradient (loss={float(loss.detach())}, grad norm="
                          f"{float(gnorm)}): update skipped ({self.nan_streak} in a row)", stacklevel=3)
            self.opt.zero_grad(set_to_none=True)
            if self.nan_streak >= cfg.nan_patience:
                raise NonFiniteUpdates(f"{self.nan_streak} consecutive non-finite updates: stopping "
                                       "(lower lr, check rewards and inputs)")
            return None
        self.nan_streak = 0
        self.opt.step()
        return gnorm

    def zero_gradient_step(self) -> None:
        """An optimiser step with every gradient zero (a minibatch whose advantages are all zero, skipped)."""
        for g in self.opt.param_groups:
            for p in g["params"]:
                p.grad = torch.zeros_like(p)
        self.opt.step()

    @property
    def evaluated(self) -> Policy:
        """The policy that validation scores and best/ and last/ hold: the weight average if ``ema`` > 0."""
        return self.policy if self.ema is None else self.ema

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * policy, for every parameter and buffer (after each update)."""
        if self.ema is None:
            return
        online = self.policy.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.is_floating_point():
                v.lerp_(online[k], 1.0 - self.cfg.optim.ema)
            else:
                v.copy_(online[k])

    def evaluate(self, split: str = "val", episodes: int | None = None) -> dict[str, dict[str, Any]]:
        """Greedy success per task over ``episodes`` seeds of ``split`` (of `evaluated`)."""
        with self.autocast():
            return self.backend.evaluate(self.evaluated, split, episodes or self.cfg.eval.episodes)

    def save_state(self) -> None:
        """Policy + optimizer + RNG + counters, atomically, for ``resume``."""
        from vla_rl.utils.io import atomic_dir

        if self.learners is not None:  # the optimizer's state lives on the learner ranks: gathered here only
            self.learners.sync(self)

        def write(tmp: Path) -> None:
            self.save_policy(self.policy, tmp / "policy", {"iteration": self.iteration})
            if self.cfg.model.lora.rank:  # what resume loads onto the init's frozen weights
                from vla_rl.policies.adapters import adapter_state

                torch.save(adapter_state(self.policy), tmp / "adapters.pt")
            if self.ema is not None:
                self.ema.save_pretrained(tmp / "ema", extra={"iteration": self.iteration})
            torch.save({"opt": self.opt.state_dict(), "gen": self.gen.get_state(), "iteration": self.iteration,
                        "seed_cursor": self.seed_cursor, "nan_skipped": self.nan_skipped, "best": self.best,
                        "totals": self.totals, "backend": self.backend.state_dict(),
                        "torch_rng": torch.get_rng_state()}, tmp / "trainer.pt")

        atomic_dir(self.out / "state", write)

    def train(self) -> dict[str, Any]:
        """Iterate to ``iterations`` (from where a resumed run stopped); returns the run's summary."""
        self.t_start = time.time()
        while self.iteration < self.cfg.iterations and not self.out_of_time:
            t0 = time.time()
            r = self.rollout()
            self.step(r, time.time() - t0)
        return self.finish()

    def next_fits(self, elapsed: float, validate_now: bool) -> bool:
        """Whether one more iteration, and a validation after it, ends within ``max_wall_s`` of the start of
        train(), ``elapsed`` seconds in, with this iteration's validation first if ``validate_now``. An
        iteration is estimated by the longest of the last three, a validation by the last one (an iteration
        until one was measured)."""
        if self.cfg.max_wall_s is None or not self.durations:
            return True
        it = max(self.durations[-3:])
        val = (self.eval_s if self.eval_s is not None else it) if self.cfg.eval.episodes else 0.0
        return elapsed + val * validate_now + it + val <= self.cfg.max_wall_s

    def step(self, r: Rollout, rollout_s: float) -> dict[str, float]:
        """Update on rollouts ``r``, then log, evaluate and checkpoint: one iteration after its rollout.
        Separate from `rollout` so that a caller may change the rewards in between (RLCCF's collective vote)."""
        cfg = self.cfg
        t1 = time.time()
        m = self.learn(r)
        self.update_ema()
        t2 = time.time()
        self.iteration += 1
        m |= self.rollout_metrics(r, rollout_s, t2 - t1)
        m |= self.backend.metrics()
        if self.learners is not None:
            m["perf/learner_retries"] = float(self.learners.retries - self.learner_retries)
            self.learner_retries = self.learners.retries
        if self.remote is not None:  # inference actors replaced so far (the calls they lost were repeated), memory
            m["perf/inference_restarts"] = float(self.remote.restarts)
            rss = self.remote.rss_mb_max()
            if rss is not None:
                m["perf/inference_actor_rss_mb_max"] = round(rss, 1)
        for k, v in r.counts().items():  # env steps (robot), generated tokens (text)
            self.totals[k] = self.totals.get(k, 0) + v
            m |= {f"perf/{k}_per_s": v / max(rollout_s, 1e-9), f"perf/{k}": float(self.totals[k])}
        self.durations.append(rollout_s + time.time() - t1)
        scheduled = self.iteration % cfg.eval.every == 0
        if self.iteration < cfg.iterations and not self.next_fits(time.time() - self.t_start, scheduled):
            self.out_of_time = True
            m["perf/stopped_by_time"] = 1.0
            self.say(f"time budget: iteration {self.iteration} is the last (max_wall_s {cfg.max_wall_s:.0f})")
        last = self.iteration == cfg.iterations or self.out_of_time
        if cfg.eval.episodes and (scheduled or last):  # and at the last, so the tail is a candidate
            m |= self.validate()
        self.log.log(self.iteration, m)
        self.say(f"iter {self.iteration}/{cfg.iterations}: success {m['rollout/success']:.2f} "
                 f"clip {m.get('actor/clip_frac', 0):.2f} kl {m.get('actor/ppo_kl', 0):.4f} "
                 f"entropy {m.get('actor/entropy', 0):.2f} ({rollout_s:.0f}+{t2 - t1:.0f} s)"
                 + (f" val {m['eval/success']:.2f}" if "eval/success" in m else ""))
        if self.iteration % cfg.checkpoint.every == 0 or last:
            self.save_state()
        return m

    def rollout_metrics(self, r: Rollout, rollout_s: float, update_s: float) -> dict[str, float]:
        """Success, reward, sizes and sampling entropy of rollouts ``r`` (lost episodes excluded), per task when
        they mix several, and of the greedy anchors; the phases' seconds."""
        valid = ~r.lost
        m = {"rollout/success": float(r.success[valid].float().mean()) if valid.any() else math.nan,
             "rollout/reward": float(r.reward[valid].mean()) if valid.any() else math.nan,
             "rollout/trajectories": float(len(r.group)), "rollout/samples": float(r.num_samples),
             "rollout/policy_entropy": float((r.entropy * r.token_mask).sum() / r.token_mask.sum().clamp(min=1)),
             "perf/rollout_s": rollout_s, "perf/update_s": update_s}
        tasks = r.tasks
        if tasks and len(set(tasks)) > 1:  # per task as well, when an iteration mixes several
            names = np.array(tasks)
            for t in sorted(set(tasks)):
                sel = torch.from_numpy(names == t) & valid
                if sel.any():
                    m[f"rollout/{t}/success"] = float(r.success[sel].float().mean())
        anchor = r.anchor
        if anchor is not None and (anchor & valid).any():  # greedy rollouts on the training seeds
            m["rollout/anchor_success"] = float(r.success[anchor & valid].float().mean())
        return m

    def validate(self) -> dict[str, float]:
        """Validation success per task and its mean; a new best mean saves `evaluated` to ``best`` (model
        selection on validation seeds only)."""
        t_eval = time.time()
        res = self.evaluate()
        self.eval_s = time.time() - t_eval
        mean = float(np.mean([v["success"] for v in res.values()]))
        if mean > self.best:
            self.best = mean
            self.save_policy(self.evaluated, self.out / "best", {"iteration": self.iteration, "val_success": mean})
        return {f"eval/{t}/success": v["success"] for t, v in res.items()} | {"eval/success": mean}

    def say(self, line: str) -> None:
        if self.console is not None:
            self.console.print(line)

    def finish(self) -> dict[str, Any]:
        """Write the last policy and ``summary.json``; returns the summary."""
        self.save_policy(self.evaluated, self.out / "last", {"iteration": self.iteration})
        summary = {"iterations": self.iteration, "stopped_by_time": self.out_of_time, **self.totals,
                   "wall_s": time.time() - self.t_start, "best_val_success": self.best}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
