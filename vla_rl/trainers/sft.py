"""Supervised fine-tuning of the VLA on demonstrations: cross-entropy on the action tokens.

`vla-rl sft configs/sft_pick.yaml` loads one or more LeRobot datasets (one per task), builds the
tokenizer and the action/state statistics from them, trains with AdamW + cosine decay, evaluates the
greedy policy on validation seeds every ``eval_every`` steps, and keeps atomic checkpoints
(``<out>/last`` and ``<out>/best``, best by validation success).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, model_validator

from vla_rl.config import Config
from vla_rl.envs import EnvConfig
from vla_rl.policies.vla.configuration_vla import VLAConfig, vla_preset

if TYPE_CHECKING:
    import torch


class SFTConfig(Config):
    """`vla-rl sft`: behaviour cloning on action tokens."""

    data: list[str] = Field(..., min_length=1, description="LeRobot dataset folders (one per task)")
    data_weights: list[float] | None = Field(
        None, description="share of each batch drawn from each dataset of `data`, in its order (normalised; "
        "None: in proportion to their sizes, i.e. uniform over samples)")
    out: str = Field("runs/sft", description="run folder: checkpoints, metrics.jsonl, tb/")
    preset: str = Field("tiny", description="VLA preset to start from (tiny, openvla-7b)")
    policy: dict[str, Any] = Field(default_factory=dict, description="overrides of the preset's VLAConfig")
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(50, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    augment_shift: int = Field(4, ge=0, description="random image shift in pixels (DrQ-style)")
    label_sigma: float = Field(0.0, ge=0, description="HL-Gauss soft labels: the target bin spread as a normal of "
                               "this std (in bins) over its neighbours (0: one-hot cross-entropy)")
    eval_every: int = Field(500, ge=1)
    eval_episodes: int = Field(20, ge=0, description="validation episodes per task (0: no eval)")
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's choice)")
    env: EnvConfig = Field(default_factory=lambda: EnvConfig(num_envs=10))

    @model_validator(mode="after")
    def _weights_match(self) -> SFTConfig:
        w = self.data_weights
        if w is not None and (len(w) != len(self.data) or min(w) < 0 or sum(w) <= 0):
            raise ValueError(f"data_weights needs one non-negative weight per dataset of data ({len(self.data)}) "
                             f"with a positive sum; got {w}")
        return self

    def vla_config(self) -> VLAConfig:
        base = vla_preset(self.preset).model_dump()
        return VLAConfig.model_validate(_deep_update(base, self.policy))


def _deep_update(base: dict, upd: dict) -> dict:
    out = dict(base)
    for k, v in upd.items():
        out[k] = _deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def all_instructions() -> list[str]:
    """Every native MuJoCo task's instruction templates (the tokenizer's training text; other backends' instructions
    come with their demos)."""
    from vla_rl.envs import env_instructions, robot_task_ids

    return [t for name in robot_task_ids("mujoco") for t in env_instructions(name)]


class DemoTensors:
    """All demo samples held as tensors: images uint8 (N, C, 3, S, S) at the policy's size, state (N, D),
    action chunks (N, T, 7), masks (N, T) and instruction strings; tasks' env ids alongside."""

    def __init__(self, roots: list[str], cfg: VLAConfig) -> None:
        import torch

        from vla_rl.data.dataset import SFTDataset
        from vla_rl.policies.vla.processor_vla import resize_images

        imgs, states, acts, masks, instr, self.tasks = [], [], [], [], [], []
        self.sizes: list[int] = []  # samples per dataset, in the order of roots
        for root in roots:
            start = len(instr)
            ds = SFTDataset(root, chunk_size=cfg.chunk_size, cameras=list(cfg.cameras), cache_episodes=1)
            task = ds.reader.info.get("vla_rl", {}).get("env_task")
            if task:
                self.tasks.append(task)
            for ep in range(ds.reader.num_episodes):
                frames = ds.reader.episode(ep).frames
                x = torch.from_numpy(np.stack([frames[c] for c in cfg.cameras], 1))  # (T, C, H, W, 3)
                imgs.append(resize_images(x.permute(0, 1, 4, 2, 3), cfg.vision.image_size))
                t = x.shape[0]
                self.camera_size = int(x.shape[2])
                states.append(torch.from_numpy(ds.states[ep]))
                for step in range(t):
                    a, m = ds.action_chunk(ep, step)
                    acts.append(a)
                    masks.append(m)
                instr += [ds.instructions[ep]] * t
            self.sizes.append(len(instr) - start)
        self.images = torch.cat(imgs)
        self.state = torch.cat(states).float()
        self.actions = np.stack(acts).astype(np.float32)
        self.masks = torch.from_numpy(np.stack(masks))
        self.instructions = instr

    def __len__(self) -> int:
        return len(self.instructions)

    def sample(self, n: int, generator: torch.Generator, weights: list[float] | None = None) -> torch.Tensor:
        """``n`` sample indices (int64): uniform over all samples, or with ``weights`` a dataset drawn by its
        weight for each index, then a sample uniform within it."""
        import torch

        if weights is None:
            return torch.randint(0, len(self), (n,), generator=generator)
        sizes = torch.tensor(self.sizes)
        w = torch.tensor(weights, dtype=torch.float64) * (sizes > 0)
        if w.sum() <= 0:
            raise ValueError("data_weights put all the weight on empty datasets")
        which = torch.multinomial(w, n, replacement=True, generator=generator)
        starts = torch.cumsum(sizes, 0) - sizes
        within = (torch.rand(n, generator=generator, dtype=torch.float64) * sizes[which]).long()
        return starts[which] + within


def random_shift(x, pad: int, generator):
    """DrQ-style augmentation: replicate-pad by ``pad`` and crop back at a random offset per image.
    x: uint8 or float (B, C, 3, S, S)."""
    import torch
    import torch.nn.functional as F

    if pad == 0:
        return x
    b, c, ch, s, _ = x.shape
    flat = F.pad(x.flatten(0, 1).float(), (pad, pad, pad, pad), mode="replicate")
    off = torch.randint(0, 2 * pad + 1, (b * c, 2), generator=generator)
    rows = (off[:, 0, None] + torch.arange(s))[:, :, None].expand(-1, s, s)
    cols = (off[:, 1, None] + torch.arange(s))[:, None, :].expand(-1, s, s)
    idx = torch.arange(b * c)[:, None, None].expand(-1, s, s)
    out = flat.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2)
    return out.reshape(b, c, ch, s, s)


def soft_labels(tokens, n_bins: int, sigma: float):
    """HL-Gauss targets (Imani & White 2018; Farebrother et al. 2024): the probability each bin gets under a
    normal centred on the target bin's centre with std ``sigma`` bins, renormalised over the bins.
    tokens int64 (...,) in [0, n_bins) -> float (..., n_bins) summing to 1."""
    import torch

    edges = torch.arange(n_bins + 1, dtype=torch.float32)  # bin j spans [j, j + 1)
    z = (edges - (tokens[..., None].float() + 0.5)) / (sigma * math.sqrt(2.0))
    cdf = 0.5 * (1 + torch.erf(z))
    p = cdf[..., 1:] - cdf[..., :-1]
    return p / p.sum(-1, keepdim=True)


def sft_loss(policy, batch, tokens, mask, label_sigma: float = 0.0):
    """Mean cross-entropy over real action tokens (one-hot, or HL-Gauss soft labels with ``label_sigma`` > 0).
    tokens int64 (B, K) in [0, n_bins); mask bool (B, K). Returns (loss, metrics) with token accuracy."""
    import torch.nn.functional as F

    logits = policy.action_logits(batch, tokens)  # (B, K, n_bins)
    target = soft_labels(tokens, logits.shape[-1], label_sigma).flatten(0, 1) if label_sigma > 0 else tokens.flatten()
    ce = F.cross_entropy(logits.flatten(0, 1), target, reduction="none").view_as(tokens)  # class ids or probabilities
    m = mask.float()
    loss = (ce * m).sum() / m.sum().clamp(min=1)
    acc = ((logits.argmax(-1) == tokens).float() * m).sum() / m.sum().clamp(min=1)
    return loss, {"loss/ce": loss.detach(), "actor/token_acc": acc.detach()}


def train_sft(cfg: SFTConfig, console: Any = None) -> dict[str, Any]:
    """Run SFT; returns a summary (final/best validation success per task, wall time, paths)."""
    import torch

    from vla_rl.trainers.metrics import MetricsLogger
    from vla_rl.trainers.schedule import lr_factor
    from vla_rl.utils.io import atomic_write_json

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    t0 = time.time()
    vcfg = cfg.vla_config()
    demos = DemoTensors(cfg.data, vcfg)
    policy, data = _new_policy(vcfg, demos)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.95))
    # a cosine to 0.1x that would reach it one step past the last (steps + 1 "iterations")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.steps + 1, cfg.warmup_steps, "cosine"))
    out = Path(cfg.out)
    log = MetricsLogger(out)
    best, history = -1.0, []
    if console:
        console.print(f"SFT: {len(demos)} samples from {len(cfg.data)} dataset(s), tasks {demos.tasks}, "
                      f"{policy.num_parameters() / 1e6:.2f}M params")
    with _progress(console) as bar:
        job = bar.add_task("sft", total=cfg.steps, info="")
        for step in range(1, cfg.steps + 1):
            metrics = _sft_step(cfg, policy, opt, data, demos, gen)
            sched.step()
            metrics["actor/lr"] = sched.get_last_lr()[0]
            if step % 10 == 0 or step == cfg.steps:
                log.log(step, metrics)
                loss_v, acc_v = float(metrics["loss/ce"]), float(metrics["actor/token_acc"])
                bar.update(job, info=f"loss {loss_v:.3f} acc {acc_v:.2f}")
            bar.update(job, completed=step)
            if cfg.eval_episodes and demos.tasks and (step % cfg.eval_every == 0 or step == cfg.steps):
                mean = _validate(cfg, policy, demos.tasks, step, log, history, console)
                if mean > best:
                    best = mean
                    policy.save_pretrained(out / "best", extra={"step": step, "val_success": mean})
    policy.save_pretrained(out / "last", extra={"step": cfg.steps})
    if best < 0:  # no evaluation ran: the last checkpoint is the one to use
        policy.save_pretrained(out / "best", extra={"step": cfg.steps})
    log.close()
    summary = {"samples": len(demos), "tasks": demos.tasks, "steps": cfg.steps, "wall_s": time.time() - t0,
               "best_val_success": best, "history": history, "checkpoint": str(out / "best")}
    atomic_write_json(out / "summary.json", summary)
    return summary


@dataclass
class _SFTData:
    """The demos as the policy reads them: action-token targets and their mask int64 / float (N, K), normalised
    state float32 (N, D), instruction ids and attention mask int64 (N, L)."""

    targets: torch.Tensor
    token_mask: torch.Tensor
    state: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor


def _new_policy(vcfg: VLAConfig, demos: DemoTensors) -> tuple[Any, _SFTData]:
    """A fresh policy with a tokenizer and normalisation statistics from ``demos`` (rolled out at the size the
    demos were rendered), and the demos as its training targets."""
    import torch

    from vla_rl.policies.tokenizer import build_tokenizer
    from vla_rl.policies.vla.modeling_vla import VLAPolicy
    from vla_rl.policies.vla.processor_vla import NormStats

    vcfg = vcfg.model_copy(update={"camera_size": demos.camera_size})
    tok = build_tokenizer(all_instructions() + demos.instructions, vocab_size=512)
    a_stats = NormStats.from_actions(demos.actions)
    s_stats = NormStats.from_actions(demos.state.numpy())
    policy = VLAPolicy(vcfg, len(tok), a_stats, s_stats, tokenizer=tok)
    proc = policy.processor()
    targets = torch.from_numpy(policy.action_tokenizer.encode(demos.actions) - policy.action_offset)
    tmask = demos.masks[:, :, None].expand(-1, -1, vcfg.action_dim).flatten(1)
    ids, amask = proc.tokenize(demos.instructions)
    return policy, _SFTData(targets.flatten(1), tmask, torch.from_numpy(proc.normalize_state(demos.state.numpy())),
                            ids, amask)


def _sft_step(cfg: SFTConfig, policy: Any, opt: torch.optim.Optimizer, data: _SFTData, demos: DemoTensors,
              gen: torch.Generator) -> dict[str, Any]:
    """One gradient step on a batch drawn from ``demos``; returns its metrics (loss, accuracy, grad norm)."""
    import torch

    from vla_rl.policies.vla.modeling_vla import VLABatch

    policy.train()
    idx = demos.sample(cfg.batch_size, gen, cfg.data_weights)
    px = random_shift(demos.images[idx], cfg.augment_shift, gen).div(127.5).sub(1.0)
    state = data.state[idx] if policy.config.use_proprio else None
    batch = VLABatch(px, data.input_ids[idx], data.attention_mask[idx], state)
    loss, metrics = sft_loss(policy, batch, data.targets[idx], data.token_mask[idx], cfg.label_sigma)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
    opt.step()
    return metrics | {"actor/grad_norm": gnorm}


def _validate(cfg: SFTConfig, policy: Any, tasks: list[str], step: int, log: Any, history: list[dict[str, Any]],
              console: Any) -> float:
    """Greedy success on ``cfg.eval_episodes`` val seeds per task, logged and appended to ``history``; the mean."""
    from vla_rl.evaluation import evaluate_policy

    res = evaluate_policy(policy, tasks, "val", cfg.eval_episodes, cfg.env)
    mean = float(np.mean([r["success"] for r in res.values()]))
    log.log(step, {f"eval/{t}/success": r["success"] for t, r in res.items()} | {"eval/success": mean})
    history.append({"step": step, "success": mean, "tasks": {t: r["success"] for t, r in res.items()}})
    if console:
        console.print(f"step {step}: val success {mean:.1%} "
                      + " ".join(f"{t.split('/')[-1]}={r['success']:.0%}" for t, r in res.items()))
    return mean


def _progress(console: Any) -> Any:
    """A rich progress bar on ``console`` (silent without one)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console, disable=console is None)


