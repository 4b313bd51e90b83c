"""Which policy class reads a checkpoint folder, from its ``config.json``: our VLA format, our OpenVLA format, or an
OpenVLA / OpenVLA-OFT Hugging Face folder (``model_type`` "openvla")."""

from __future__ import annotations

import json
from pathlib import Path

from vla_rl.policies.base import Policy

ROBOT_FORMATS = {"vla-rl/vla-v1": "vla_rl.policies.vla.modeling_vla:VLAPolicy",
                 "vla-rl/openvla-v1": "vla_rl.policies.openvla.modeling_openvla:OpenVLAPolicy",
                 "openvla": "vla_rl.policies.openvla.modeling_openvla:OpenVLAPolicy"}


def robot_policy_class(path: str | Path) -> type[Policy]:
    """The class whose ``from_pretrained(path)`` loads the robot policy in folder ``path``."""
    import importlib

    cfg_file = Path(path) / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint folder: {cfg_file.name} is missing")
    meta = json.loads(cfg_file.read_text())
    kind = meta.get("format") or meta.get("model_type")
    if kind not in ROBOT_FORMATS:
        raise ValueError(f"{cfg_file}: format / model_type {kind!r} is not a robot policy; valid: "
                         f"{', '.join(ROBOT_FORMATS)}")
    module, name = ROBOT_FORMATS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def load_robot_policy(path: str | Path) -> Policy:
    """``robot_policy_class(path).from_pretrained(path)``."""
    return robot_policy_class(path).from_pretrained(path)
