"""`vla-rl bench tokens`: what the image-token merge (`VisionConfig.merge`) and a shorter instruction window
(`VLAConfig.max_instruction_tokens`) save in the tiny VLA's compute, in one run.

Each variant is the ``tiny`` preset with the quickstart's two 64-px cameras and chunk 8 (random weights: speed
does not depend on them). Timed per variant, interleaved over ``repeats`` rounds (the best round kept): one
forward + backward of the GRPO loss's log-probs on a minibatch (the update's unit of work), and one parallel
chunk decode (`VLAPolicy.act`) for ``act_batch`` observations (the rollout's). The first variant is the
baseline; writes ``bench/results/tokens.json``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any

from pydantic import Field

from vla_rl.config import Config


class BenchTokensConfig(Config):
    """`vla-rl bench tokens`: sequence length vs compute of the tiny VLA."""

    variants: list[tuple[int, int]] = Field([(1, 24), (2, 24), (2, 16)], min_length=1,
                                            description="(vision.merge, max_instruction_tokens); the first is "
                                            "the baseline")
    minibatch: int = Field(256, ge=1, description="samples per forward + backward")
    act_batch: int = Field(64, ge=1, description="observations per chunk decode")
    repeats: int = Field(3, ge=1)
    threads: int = Field(2, ge=1, description="torch threads")
    out: str = "bench/results/tokens.json"


def run_tokens_bench(cfg: BenchTokensConfig) -> dict[str, Any]:
    import torch

    from bench.rollout_bench import random_policy
    from vla_rl.policies.vla.configuration_vla import VisionConfig, VLAConfig
    from vla_rl.policies.vla.modeling_vla import VLABatch
    from vla_rl.utils.io import atomic_write_json

    torch.set_num_threads(cfg.threads)
    gen = torch.Generator().manual_seed(0)
    rows: dict[str, dict[str, Any]] = {}
    models = {}
    for merge, n_txt in cfg.variants:
        pol = random_policy(VLAConfig(vision=VisionConfig(merge=merge), cameras=("agentview", "wrist"), chunk_size=8,
                                      max_instruction_tokens=n_txt))
        ids, mask = pol.processor().tokenize(["push the red cube to the green target"] * cfg.minibatch)
        batch = VLABatch(torch.rand(cfg.minibatch, 2, 3, 64, 64, generator=gen) * 2 - 1, ids, mask,
                         torch.randn(cfg.minibatch, 8, generator=gen))
        tokens = torch.randint(0, 256, (cfg.minibatch, pol.config.num_action_tokens), generator=gen)
        seq = pol._prefix(batch.index(slice(0, 1)))[0].shape[1] + pol.config.num_action_tokens
        key = f"merge{merge}_instr{n_txt}"
        models[key] = (pol, batch, tokens)
        rows[key] = {"merge": merge, "max_instruction_tokens": n_txt, "sequence_tokens": seq,
                     "parameters": pol.num_parameters(), "update_s": float("inf"), "act_s": float("inf")}
    for _ in range(cfg.repeats):
        for key, (pol, batch, tokens) in models.items():
            pol.train()
            t0 = time.perf_counter()
            logp, _ = pol.logprobs(batch, tokens)
            logp.mean().backward()
            rows[key]["update_s"] = min(rows[key]["update_s"], time.perf_counter() - t0)
            pol.zero_grad(set_to_none=True)
            pol.eval()
            obs = batch.index(slice(0, cfg.act_batch))
            t0 = time.perf_counter()
            with torch.no_grad():
                pol.act(obs, temperature=1.0, generator=gen)
            rows[key]["act_s"] = min(rows[key]["act_s"], time.perf_counter() - t0)
    base = rows[next(iter(rows))]
    for r in rows.values():
        r["update_s"], r["act_s"] = round(r["update_s"], 3), round(r["act_s"], 4)
        r["update_speedup"] = round(base["update_s"] / r["update_s"], 2)
        r["act_speedup"] = round(base["act_s"] / r["act_s"], 2)
    doc = {"machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0],
                       "torch": torch.__version__, "torch_threads": cfg.threads},
           "settings": {"minibatch": cfg.minibatch, "act_batch": cfg.act_batch, "repeats": cfg.repeats,
                        "cameras": 2, "image_size": 64, "chunk": 8, "policy": "tiny (random weights)"},
           "variants": rows}
    atomic_write_json(cfg.out, doc)
    return doc


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import parse_args

    cfg = parse_args(BenchTokensConfig, list(sys.argv[1:] if argv is None else argv), "bench tokens")
    doc = run_tokens_bench(cfg)
    print(json.dumps(doc["variants"], indent=2))


if __name__ == "__main__":
    main()
