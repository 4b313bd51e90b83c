"""`vla-rl bench vla7b`: the OpenVLA-7B-shape policy on a GPU, random weights in bf16: one batched parallel
chunk decode for ``batch`` observations and one GRPO update on ``batch`` chunk samples; writes
``bench/results/vla7b.json``.

- Decode: ``VLAPolicy.act`` at temperature 1.6 on ``batch`` observations (two 224-px cameras, a 24-token
  instruction, a proprio token), one forward pass for the whole 8 x 7 chunk (OFT parallel decoding), the
  actions decoded to numpy as the sims need them. ``warmup`` calls first, then ``repeats`` timed calls
  (CUDA synchronised); tokens/s = batch x 56 / mean seconds. The autoregressive path (56 sequential steps
  with the KV cache) is timed beside it on the same weights.
- Update: the trainer's update on one minibatch: re-score the sampled tokens (``logprobs``), the
  ``ppo_clip`` loss (clip 0.2 / 0.28, dual clip 3, token-mean) with +-1 advantages, backward, grad-norm
  clip 1.0, one fused AdamW step (bf16 states, as the parameters). One warm-up step (it allocates the
  optimizer state) and ``steps`` timed steps. Without activation checkpointing first; if that runs out
  of GPU memory, the OOM is recorded and the update is timed again with checkpointing (``use_reentrant=False``)
  in the vision tower and the LM.
- Peak memory: ``torch.cuda.max_memory_allocated`` over each phase (weights included).

On a CPU (``device=cpu``) with ``preset=tiny`` the same code runs in seconds; the test suite does that.
"""

from __future__ import annotations

import gc
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from vla_rl.config import Config


class BenchVLA7BConfig(Config):
    """`vla-rl bench vla7b`: decode and update time and memory of a VLA preset on one device."""

    preset: str = "openvla-7b"
    device: str = "cuda"
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    batch: int = Field(16, ge=1, description="observations per decode = chunk samples per update")
    temperature: float = Field(1.6, gt=0)
    warmup: int = Field(2, ge=0)
    repeats: int = Field(10, ge=1, description="timed decode calls")
    ar_repeats: int = Field(2, ge=0, description="timed autoregressive decode calls (0: skip)")
    steps: int = Field(3, ge=1, description="timed update steps")
    checkpointing: bool | None = Field(
        None, description="activation checkpointing in the update; null: off, then on after an OOM")
    out: str = "bench/results/vla7b.json"


def build_policy(preset: str, device: str, dtype: torch.dtype):
    """A policy of ``preset`` with random weights, constructed directly on ``device`` in ``dtype``."""
    from vla_rl.policies.vla.configuration_vla import vla_preset
    from vla_rl.policies.vla.modeling_vla import VLAPolicy
    from vla_rl.policies.vla.processor_vla import NormStats

    cfg = vla_preset(preset)
    ones_a, ones_s = np.ones(cfg.action_dim), np.ones(cfg.state_dim)
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            pol = VLAPolicy(cfg, cfg.lm.vocab_size or 1024, NormStats(-ones_a, ones_a), NormStats(-ones_s, ones_s))
    finally:
        torch.set_default_dtype(old)
    return pol.to(device=device, dtype=dtype)


def random_batch(pol: Any, batch: int, device: str, dtype: torch.dtype):
    """``batch`` observations of the policy's shapes: pixels in [-1, 1] for every camera, a full-length
    instruction of non-action ids, a proprio state."""
    from vla_rl.policies.vla.modeling_vla import VLABatch

    cfg = pol.config
    g = torch.Generator(device).manual_seed(1)
    s = cfg.vision.image_size
    pixels = (torch.rand(batch, len(cfg.cameras), 3, s, s, generator=g, device=device) * 2 - 1).to(dtype)
    ids = torch.randint(0, pol.action_offset, (batch, cfg.max_instruction_tokens), generator=g, device=device)
    state = torch.randn(batch, cfg.state_dim, generator=g, device=device).to(dtype)
    return VLABatch(pixels, ids, torch.ones_like(ids), state if cfg.use_proprio else None)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def time_decode(pol: Any, batch: Any, cfg: BenchVLA7BConfig, autoregressive: bool = False) -> dict[str, Any]:
    """Mean seconds of one batched chunk decode, tokens/s and peak memory."""
    pol.eval()
    old = pol.config
    if autoregressive:
        pol.config = old.model_copy(update={"decoding": "autoregressive"})
    repeats = cfg.ar_repeats if autoregressive else cfg.repeats
    try:
        with torch.inference_mode():
            for _ in range(min(cfg.warmup, 1) if autoregressive else cfg.warmup):
                pol.act(batch, temperature=cfg.temperature)
            _reset_peak(cfg.device)
            times = []
            for _ in range(repeats):
                _sync(cfg.device)
                t0 = time.perf_counter()
                out = pol.act(batch, temperature=cfg.temperature)
                _sync(cfg.device)
                times.append(time.perf_counter() - t0)
    finally:
        pol.config = old
    k = out.tokens.shape[1]
    mean = float(np.mean(times))
    return {"seconds": mean, "seconds_all": times, "tokens_per_decode": len(batch) * k,
            "tokens_per_s": len(batch) * k / mean, "observations_per_s": len(batch) / mean,
            "peak_memory_gib": _peak_gib(cfg.device)}


def time_update(pol: Any, batch: Any, cfg: BenchVLA7BConfig, checkpointing: bool) -> dict[str, Any]:
    """One warm-up and ``cfg.steps`` timed GRPO updates on ``batch`` chunk samples."""
    from vla_rl.algos import POLICY_LOSSES
    from vla_rl.policies.adapters import set_activation_checkpointing

    pol.eval()
    with torch.no_grad():
        sampled = pol.act(batch, temperature=cfg.temperature)
    tokens, old_logp = sampled.tokens, sampled.logprobs.float().to(cfg.device)  # act answers on the CPU
    adv = torch.tensor([1.0, -1.0], device=cfg.device).repeat((len(batch) + 1) // 2)[: len(batch)]
    mask = torch.ones_like(old_logp)
    loss_fn = POLICY_LOSSES.get("ppo_clip")
    set_activation_checkpointing(pol, checkpointing)  # the vision encoder and the LM
    pol.train()
    fused = cfg.device.startswith("cuda")
    opt = torch.optim.AdamW(pol.parameters(), lr=1e-6, betas=(0.9, 0.95), weight_decay=0.0, fused=fused)
    _reset_peak(cfg.device)
    times, metrics = [], {}
    for i in range(1 + cfg.steps):
        _sync(cfg.device)
        t0 = time.perf_counter()
        logp, ent = pol.logprobs(batch, tokens, cfg.temperature)
        loss, metrics = loss_fn(logp, old_logp, adv, mask, agg_mode="token-mean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(pol.parameters(), 1.0)
        opt.step()
        _sync(cfg.device)
        if i:
            times.append(time.perf_counter() - t0)
    state_bytes = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values()
                      if torch.is_tensor(t))
    opt.zero_grad(set_to_none=True)
    del opt
    mean = float(np.mean(times))
    k = tokens.shape[1]
    return {"checkpointing": checkpointing, "seconds": mean, "seconds_all": times,
            "samples_per_s": len(batch) / mean, "action_tokens_per_s": len(batch) * k / mean,
            "peak_memory_gib": _peak_gib(cfg.device), "optimizer_state_gib": state_bytes / 2**30,
            "loss": float(loss.detach()), "grad_norm": float(gnorm),
            "ppo_kl": float(metrics["actor/ppo_kl"]), "entropy": float(ent.detach().float().mean())}


def _free(pol: Any, device: str) -> None:
    pol.zero_grad(set_to_none=True)
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def run_vla7b_bench(cfg: BenchVLA7BConfig) -> dict[str, Any]:
    """Decode and update figures of ``cfg.preset`` on ``cfg.device``; writes ``cfg.out``."""
    import transformers

    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("bench vla7b needs a CUDA GPU (device=cuda); for a CPU smoke run use "
                           "preset=tiny device=cpu")
    dtype = getattr(torch, cfg.dtype)
    t0 = time.perf_counter()
    pol = build_policy(cfg.preset, cfg.device, dtype)
    _sync(cfg.device)
    build_s = time.perf_counter() - t0
    batch = random_batch(pol, cfg.batch, cfg.device, dtype)
    doc: dict[str, Any] = {
        "preset": cfg.preset, "dtype": cfg.dtype, "batch": cfg.batch, "temperature": cfg.temperature,
        "parameters": pol.num_parameters(), "build_s": build_s,
        "weights_gib": sum(p.numel() * p.element_size() for p in pol.parameters()) / 2**30,
        "chunk": [pol.config.chunk_size, pol.config.action_dim],
        "prefix_tokens": len(pol.config.cameras) * (pol.config.vision.image_size // pol.config.vision.patch_size) ** 2
        + pol.config.max_instruction_tokens + int(pol.config.use_proprio),
        "decode_parallel": time_decode(pol, batch, cfg),
    }
    if cfg.ar_repeats:
        try:
            doc["decode_autoregressive"] = time_decode(pol, batch, cfg, autoregressive=True)
            doc["parallel_over_autoregressive"] = (doc["decode_autoregressive"]["seconds"]
                                                   / doc["decode_parallel"]["seconds"])
        except Exception as e:  # noqa: BLE001  (a transformers version without our cache call: keep the rest)
            doc["decode_autoregressive"] = {"error": f"{type(e).__name__}: {e}"[:300]}
    attempts = [False, True] if cfg.checkpointing is None else [cfg.checkpointing]
    doc["update"] = []
    for ckpt in attempts:
        oom = None
        try:
            doc["update"].append(time_update(pol, batch, cfg, ckpt))
        except torch.cuda.OutOfMemoryError as e:
            oom = str(e).splitlines()[0][:300]
        _free(pol, cfg.device)
        if oom is None:
            break
        doc["update"].append({"checkpointing": ckpt, "out_of_memory": oom})
    doc["machine"] = {"device": torch.cuda.get_device_name() if cfg.device.startswith("cuda") else platform.processor()
                      or platform.machine(), "torch": torch.__version__, "transformers": transformers.__version__,
                      "python": platform.python_version()}
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(doc, indent=2))
    return doc


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import parse_args

    cfg = parse_args(BenchVLA7BConfig, list(sys.argv[1:] if argv is None else argv), "bench vla7b")
    print(json.dumps(run_vla7b_bench(cfg), indent=2))


if __name__ == "__main__":
    main()
