"""`vla-rl bench micro`: the memory and seconds of one GRPO update (`GRPOTrainer.update`, one Adam step over the
whole batch, as the long-horizon recipe takes) forwarded whole and in micro-batches (``optim.micro_batch_size``),
on the same rollout from the same weights; the whole forward is the baseline of the same run.
-> bench/results/micro_batch.json

    vla-rl bench micro [size=tiny] [samples=1024] [micros=[null,256,64]]

Each setting runs in a fresh process (spawned), so its peak resident memory (``ru_maxrss``) is its own: the peak
during the update less the resident memory just before it is what the update's activations took. The parameters
each setting ends with are compared with the whole forward's (the largest absolute difference: float rounding
only, when the parts add up). The rollout is synthetic (`bench.data_parallel_bench.synthetic_rollout`: random
images, the policy's own sampled tokens, every other trajectory a success, so every sample has a nonzero advantage
and is forwarded): the update's cost does not depend on where the samples came from.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from typing import Any

import torch
from pydantic import Field

from bench.results_io import write_json
from vla_rl.config import Config


class BenchMicroConfig(Config):
    """`vla-rl bench micro`: one update forwarded whole and in micro-batches."""

    size: str = Field("tiny", pattern="^(micro|tiny)$", description="the policy: micro (the tests') or tiny (the "
                      "quickstart's)")
    samples: int = Field(1024, ge=8, description="samples in the rollout (trajectories of 4 steps)")
    micros: list[int | None] = Field([None, 256, 64], min_length=1, description="micro_batch_size of each setting; "
                                     "null: the whole batch at once (the baseline, run first)")
    threads: int = Field(2, ge=1, description="torch threads of each setting's process")
    results: str = Field("bench/results/micro_batch.json", description="where the figures go")


def _one_setting(init: str, rollout: str, out: str, samples: int, micro: int | None, threads: int,
                 params_path: str, queue: Any) -> None:
    """In a fresh process: one update with ``micro``; puts its seconds and memory on ``queue``, writes the final
    parameters to ``params_path``."""
    from bench.data_parallel_bench import learner
    from vla_rl.distributed.ray_env import rss_mb

    t = learner(init, out, threads=threads, optim={"epochs": 1, "minibatch_size": samples,
                                                   "micro_batch_size": micro, "lr": 2e-5})
    try:
        r = torch.load(rollout, weights_only=False)
        before = rss_mb()
        t0 = time.perf_counter()
        metrics = t.update(r)
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        torch.save(torch.cat([p.detach().flatten() for p in t.policy.parameters()]), params_path)
        queue.put({"micro_batch_size": micro, "update_s": round(seconds, 2), "rss_before_update_mb": round(before),
                   "peak_rss_mb": round(peak), "update_peak_mb": round(peak - before),
                   "loss": float(metrics["loss/pg"]), "grad_norm": float(metrics["actor/grad_norm"])})
    finally:
        t.close()


def run_micro_bench(cfg: BenchMicroConfig) -> dict[str, Any]:
    """Every setting of ``cfg.micros`` on one saved rollout; the figures, also written to ``cfg.results``."""
    from bench.data_parallel_bench import make_policy, synthetic_rollout

    ctx = mp.get_context("spawn")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        policy = make_policy(cfg.size)
        init, rollout = f"{tmp}/init", f"{tmp}/rollout.pt"
        policy.save_pretrained(init)
        torch.save(synthetic_rollout(policy, trajectories=cfg.samples // 4, steps=4), rollout)
        params: list[torch.Tensor] = []
        for i, micro in enumerate(cfg.micros):
            queue = ctx.Queue()
            proc = ctx.Process(target=_one_setting, args=(init, rollout, f"{tmp}/run{i}", cfg.samples, micro,
                                                          cfg.threads, f"{tmp}/params{i}.pt", queue))
            proc.start()
            row = queue.get(timeout=3600)
            proc.join()
            params.append(torch.load(f"{tmp}/params{i}.pt"))
            row["max_abs_param_diff_vs_first"] = float((params[-1] - params[0]).abs().max())
            rows.append(row)
            print(row, flush=True)
        n_params = sum(p.numel() for p in policy.parameters())
    base = rows[0]
    for row in rows:
        row["update_peak_vs_first"] = round(row["update_peak_mb"] / max(base["update_peak_mb"], 1), 3)
        row["update_s_vs_first"] = round(row["update_s"] / base["update_s"], 3)
    doc = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "policy": cfg.size, "params": n_params, "samples": cfg.samples, "threads": cfg.threads,
           "what": "one GRPOTrainer.update (epochs 1, one minibatch of every sample, one AdamW step) per setting, "
                   "each in a fresh process; update_peak_mb = peak resident memory during the update less the "
                   "resident memory just before it",
           "load_average_1min": round(os.getloadavg()[0], 2), "settings": rows}
    write_json(cfg.results, doc)
    return doc


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import parse_args

    cfg = parse_args(BenchMicroConfig, list(sys.argv[1:] if argv is None else argv), "bench micro")
    run_micro_bench(cfg)


if __name__ == "__main__":
    main()
