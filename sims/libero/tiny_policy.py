"""A random-weight micro VLA shaped for LIBERO: both cameras (agentview, wrist) at 32 px, 8-dim proprio, 7-dim
EE-delta actions, chunks of 4, a tokenizer trained on the tasks' instructions. It checks the plumbing (the GRPO
smoke run, configs/vla_grpo_libero_smoke.yaml), it does not solve tasks: SFT on LIBERO's demos
(`sims.libero.demos`) gives a policy worth training::

    python -m sims.libero.tiny_policy --out runs/libero_smoke/init --task libero/spatial/0

The normalisation stats are placeholders ([-1, 1] per dimension: LIBERO's action range; for the state, whose
positions are metres and angles radians, only a scale); an SFT checkpoint carries its demos' stats instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from sims.libero.env import STATE_DIM
from vla_rl.envs import env_instructions
from vla_rl.policies.tokenizer import build_tokenizer
from vla_rl.policies.vla.configuration_vla import LMConfig, VisionConfig, VLAConfig
from vla_rl.policies.vla.modeling_vla import VLAPolicy
from vla_rl.policies.vla.processor_vla import NormStats


def tiny_policy(tasks: list[str], image_size: int = 32, chunk_size: int = 4, seed: int = 0) -> VLAPolicy:
    """The micro VLA for LIBERO task ids ``tasks`` (``libero/<suite>/<i>``); weights drawn from ``seed``."""
    import torch

    torch.manual_seed(seed)
    width = dict(num_layers=1, num_heads=2, hidden_size=32, intermediate_size=64)
    cfg = VLAConfig(vision=VisionConfig(image_size=image_size, patch_size=8, **width), lm=LMConfig(**width),
                    cameras=("agentview", "wrist"), chunk_size=chunk_size, state_dim=STATE_DIM, action_dim=7)
    texts = [t for task in tasks for t in env_instructions(task)]
    tok = build_tokenizer(texts, vocab_size=300)
    ones = np.ones(7), np.ones(STATE_DIM)
    return VLAPolicy(cfg, len(tok), NormStats(-ones[0], ones[0]), NormStats(-ones[1], ones[1]), tokenizer=tok)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sims.libero.tiny_policy", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--task", action="append", default=None, help="a LIBERO task id (repeatable; default "
                   "libero/spatial/0)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    policy = tiny_policy(a.task or ["libero/spatial/0"], image_size=a.image_size, seed=a.seed)
    policy.save_pretrained(Path(a.out))
    print(f"tiny LIBERO VLA ({sum(x.numel() for x in policy.parameters())} parameters) -> {a.out}")


if __name__ == "__main__":
    main()
