import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import pytest  # noqa: E402  (after the GL environment above)


@pytest.fixture(scope="module")
def tiny_vla():
    """A micro VLA policy with random weights (32 px, 1-layer vision and LM of width 32, chunk 4), seeded: the
    policy every test module that rolls out, evaluates or trains one builds the same way."""
    import numpy as np
    import torch

    from vla_rl.policies.tokenizer import build_tokenizer
    from vla_rl.policies.vla.configuration_vla import LMConfig, VisionConfig, VLAConfig
    from vla_rl.policies.vla.modeling_vla import VLAPolicy
    from vla_rl.policies.vla.processor_vla import NormStats
    from vla_rl.trainers.sft import all_instructions

    torch.manual_seed(0)
    cfg = VLAConfig(vision=VisionConfig(image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2,
                                        intermediate_size=64),
                    lm=LMConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64), chunk_size=4)
    tok = build_tokenizer(all_instructions(), vocab_size=300)
    return VLAPolicy(cfg, len(tok), NormStats(-np.ones(7), np.ones(7)), NormStats(-np.ones(8), np.ones(8)),
                     tokenizer=tok)
