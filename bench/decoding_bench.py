"""`vla-rl bench decoding`: how far each action token's argmax sits from its median, per checkpoint.

Two point decodings of a token's distribution over the ordered bins (`VLAConfig.point_decoding`): the most
likely bin and the median bin. On a sharp distribution they agree; on a broad, flat-topped one the argmax is
a near-tie among many bins. This reads each checkpoint's action distributions on the same observations (the
first ``chunks`` chunks of ``episodes`` test seeds, stepped by the first checkpoint's median-decoded actions),
over the action dimensions that move (``dims``), and writes ``bench/results/decoding.json``: the mean and
median |argmax - median| in bins, the fraction of tokens where it is >= ``far`` bins, and the mean entropy.
The first checkpoint is the baseline (e.g. the SFT policy), the others are compared with it in the same run.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
from pydantic import Field

import sims.mujoco  # noqa: F401  (MUJOCO_GL default before mujoco is imported)
from vla_rl.config import Config


class BenchDecodingConfig(Config):
    """`vla-rl bench decoding`: argmax-median gap and entropy of the action tokens of each checkpoint."""

    policies: list[str] = Field(..., min_length=1, description="checkpoint folders; the first is the baseline")
    task: str = Field("mujoco/OpenDrawerNarrow-v1", description="robot task id")
    episodes: int = Field(20, ge=1, description="test seeds")
    chunks: int = Field(4, ge=1, description="chunks per episode read (the first one at reset)")
    dims: list[int] = Field([0, 1, 2, 5], min_length=1, description="action dimensions read")
    far: int = Field(5, ge=1, description="a gap of at least this many bins counts as far")
    threads: int = Field(1, ge=1, description="torch threads")
    out: str = "bench/results/decoding.json"


def token_stats(probs: Any, columns: list[int], far: int) -> dict[str, float]:
    """probs (B, K, n) over ordered bins; ``columns``: the token columns read -> gap and entropy figures."""

    p = probs[:, columns]
    gap = (p.argmax(-1) - (p.cumsum(-1) < 0.5).sum(-1)).abs().float()
    entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
    return {"mean_gap_bins": float(gap.mean()), "median_gap_bins": float(gap.median()),
            "far_fraction": float((gap >= far).float().mean()), "entropy_nats": float(entropy.mean()),
            "tokens": int(gap.numel())}


class _ReadTokens:
    """Acts by the first checkpoint's median-decoded chunks; before each chunk, keeps every checkpoint's action
    token probabilities float (live envs, K, n_bins) on the same observations."""

    def __init__(self, paths: list[str]) -> None:
        from vla_rl.policies.vla.modeling_vla import VLAPolicy

        self.policies = {path: VLAPolicy.from_pretrained(path).eval() for path in paths}
        self.processors = {path: pol.processor() for path, pol in self.policies.items()}
        self.lead = paths[0]
        self.probs: dict[str, list[Any]] = {path: [] for path in paths}

    def act(self, obs: dict, instructions: list[str], active: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            for path, pol in self.policies.items():
                batch = self.processors[path](obs, instructions)
                self.probs[path].append(torch.softmax(pol.action_logits(batch).float(), -1)[active])
            lead = self.policies[self.lead]
            batch = self.processors[self.lead](obs, instructions)
            return lead.act(batch, greedy=True, point_decoding="median").actions


def run_decoding_bench(cfg: BenchDecodingConfig) -> dict[str, Any]:
    import torch

    from vla_rl.envs import EnvConfig, check_task_id, make_vector_env
    from vla_rl.rollout.episodes import run_waves
    from vla_rl.splits import split_seeds
    from vla_rl.utils.io import atomic_write_json

    check_task_id(cfg.task)
    torch.set_num_threads(cfg.threads)
    reader = _ReadTokens(cfg.policies)
    lead = reader.policies[reader.lead].config
    bad = [d for d in cfg.dims if not 0 <= d < lead.action_dim]
    if bad:
        raise ValueError(f"dims {bad} are outside the policy's {lead.action_dim} action dimensions")
    with make_vector_env(EnvConfig(num_envs=cfg.episodes).for_policy(lead), cfg.task) as env:
        run_waves(env, reader, split_seeds("test", cfg.episodes), max_chunks=cfg.chunks)  # one wave
    columns = [j for j in range(lead.num_action_tokens) if j % lead.action_dim in cfg.dims]
    rows = {path: token_stats(torch.cat(p), columns, cfg.far) for path, p in reader.probs.items()}
    doc = {"task": cfg.task, "episodes": cfg.episodes, "chunks": cfg.chunks, "dims": cfg.dims, "far": cfg.far,
           "baseline": cfg.policies[0], "policies": rows}
    atomic_write_json(cfg.out, doc)
    return doc


def main(argv: list[str] | None = None) -> None:
    from vla_rl.cli import parse_args

    cfg = parse_args(BenchDecodingConfig, list(sys.argv[1:] if argv is None else argv), "bench decoding")
    print(json.dumps(run_decoding_bench(cfg)["policies"], indent=2))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
