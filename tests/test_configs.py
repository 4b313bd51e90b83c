"""Every preset in configs/ validates against its command's schema (a typo in a preset fails here)."""

from pathlib import Path

import pytest
import yaml

from vla_rl.config import load_config
from vla_rl.evaluation import EvalConfig
from vla_rl.trainers.grpo import GRPOConfig
from vla_rl.trainers.quickstart import QuickstartConfig
from vla_rl.trainers.sft import SFTConfig
from vla_rl.trainers.text_quickstart import TextQuickstartConfig
from vla_rl.trainers.text_rlccf import RLCCFConfig

SCHEMAS = {"eval": EvalConfig, "sft": SFTConfig, "vla_grpo": GRPOConfig, "openvla": GRPOConfig,
           "quickstart": QuickstartConfig,
           "text_quickstart": TextQuickstartConfig, "text_rlccf": RLCCFConfig}
PRESETS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_preset_validates(path):
    from vla_rl.trainers import TRAIN_JOBS

    job = yaml.safe_load(path.read_text()).get("type")  # a train job names its schema (`vla-rl train` reads it)
    schema = TRAIN_JOBS.get(job) if job else next((s for p, s in SCHEMAS.items() if path.name.startswith(p)), None)
    assert schema is not None, f"{path.name}: no schema registered for this preset's prefix"
    load_config(schema, path)
