"""Reading an OpenVLA / OpenVLA-OFT Hugging Face folder's configuration, and the acting settings of our policy.

An OpenVLA folder (``openvla/openvla-7b``, an OFT fine-tune, a SimpleVLA-RL checkpoint) holds ``config.json``
(``model_type`` "openvla": ``vision_backbone_id``, ``use_fused_vision_backbone``, ``timm_model_ids``,
``image_sizes``, ``image_resize_strategy``, ``llm_backbone_id``, ``text_config`` (Llama; only the fields that differ
from transformers' Llama defaults, which are Llama-2-7B's), ``pad_token_id`` 32000, ``pad_to_multiple_of`` 64,
``n_action_bins`` 256, ``norm_stats`` {dataset: {"action": {q01, q99, mask, ...}, "proprio": {...}}}), the weights
(``model.safetensors`` or shards listed in ``model.safetensors.index.json``), ``dataset_statistics.json`` (the
norm stats of the fine-tuning data; they replace ``norm_stats`` when present, as OFT's loader does), the tokenizer
and, for OFT, ``action_head--<step>_checkpoint.pt`` / ``proprio_projector--<step>_checkpoint.pt``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from vla_rl.config import Config
from vla_rl.policies.vla.configuration_vla import PointDecoding

# OpenVLA's constants (its configuration_prismatic.py / OFT's constants.py): the Llama-2 "empty" token that ends
# every training prompt, the stop token that closes OFT's action block, the bos token.
EMPTY_TOKEN, STOP_TOKEN = 29871, 2
PROMPT = "In: What action should the robot take to {instruction}?\nOut:"

# transformers 4.40's LlamaConfig defaults (Llama-2-7B): OpenVLA's config.json stores text_config as a diff
# against them, so they are pinned here rather than taken from whatever transformers is installed.
LLAMA_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
    "num_attention_heads": 32, "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
    "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": False, "attention_bias": False,
}
LLAMA_KEYS = (*LLAMA_DEFAULTS, "num_key_value_heads", "rope_theta", "rope_scaling", "pad_token_id", "mlp_bias")
REQUIRED = ("vision_backbone_id", "llm_backbone_id", "timm_model_ids", "image_sizes", "text_config")


class OpenVLAFolderError(ValueError):
    """An OpenVLA folder that is incomplete, of another model type, or asks for something unsupported."""


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise OpenVLAFolderError(f"{path}: missing") from None
    except json.JSONDecodeError as e:
        raise OpenVLAFolderError(f"{path}: not valid JSON ({e})") from None


def read_hf_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of an OpenVLA folder, checked, with ``norm_stats`` taken from ``dataset_statistics.json``
    when the folder has one. Raises `OpenVLAFolderError` naming what is missing or wrong."""
    folder = Path(folder)
    cfg = read_json(folder / "config.json")
    if cfg.get("model_type") != "openvla":
        raise OpenVLAFolderError(f"{folder / 'config.json'}: model_type {cfg.get('model_type')!r}; expected "
                                 "'openvla' (an OpenVLA or OpenVLA-OFT Hugging Face folder)")
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise OpenVLAFolderError(f"{folder / 'config.json'} lacks {', '.join(missing)}; save the model with "
                                 "OpenVLA's own code (transformers' save_pretrained writes them)")
    if not str(cfg["llm_backbone_id"]).startswith(("llama2", "vicuna")):
        raise OpenVLAFolderError(f"LLM backbone {cfg['llm_backbone_id']!r} is not supported: only the Llama family "
                                 "(llama2-*, vicuna-*), which every released OpenVLA uses")
    if len(cfg["timm_model_ids"]) not in (1, 2) or len(cfg["image_sizes"]) != len(cfg["timm_model_ids"]):
        raise OpenVLAFolderError(f"timm_model_ids {cfg['timm_model_ids']} and image_sizes {cfg['image_sizes']} must "
                                 "name one or two backbones, one size each")
    if len(set(cfg["image_sizes"])) != 1:
        raise OpenVLAFolderError(f"fused backbones of different input sizes {cfg['image_sizes']} are not supported")
    stats = folder / "dataset_statistics.json"
    if stats.is_file():
        cfg = {**cfg, "norm_stats": read_json(stats)}
    if not cfg.get("norm_stats"):
        raise OpenVLAFolderError(f"{folder}: no norm stats (config.json norm_stats is empty and there is no "
                                 "dataset_statistics.json); a fine-tuned checkpoint holds the statistics of its data")
    return cfg


def llama_config_dict(text_config: dict[str, Any]) -> dict[str, Any]:
    """The full Llama configuration of an OpenVLA ``text_config`` (its diff over `LLAMA_DEFAULTS`)."""
    return {**LLAMA_DEFAULTS, **{k: v for k, v in text_config.items() if k in LLAMA_KEYS}}


def is_fused(cfg: dict[str, Any]) -> bool:
    """Whether the folder's backbone is two fused featurizers (OpenVLA derives it from the id when unset)."""
    fused = cfg.get("use_fused_vision_backbone")
    return bool(fused) if fused is not None else str(cfg["vision_backbone_id"]).startswith(("dinoclip", "dinosiglip"))


def pick_unnorm_key(norm_stats: dict[str, Any], unnorm_key: str | None) -> str:
    """The dataset whose statistics un-normalise the actions: ``unnorm_key``, or the only one."""
    keys = sorted(norm_stats)
    if unnorm_key is None:
        if len(keys) != 1:
            raise OpenVLAFolderError(f"the checkpoint holds norm stats of {len(keys)} datasets; choose one with "
                                     f"unnorm_key (valid: {', '.join(keys)})")
        return keys[0]
    if unnorm_key not in norm_stats:
        raise OpenVLAFolderError(f"unnorm_key {unnorm_key!r} is not in the checkpoint's norm stats; valid: "
                                 f"{', '.join(keys)}")
    if "action" not in norm_stats[unnorm_key] or not {"q01", "q99"} <= set(norm_stats[unnorm_key]["action"]):
        raise OpenVLAFolderError(f"norm stats of {unnorm_key!r} lack action q01 / q99")
    return unnorm_key


Variant = Literal["openvla", "oft"]


class OpenVLAPolicyConfig(Config):
    """How our policy acts with an OpenVLA checkpoint (the architecture is the folder's ``config.json``).

    ``openvla``: one step of ``action_dim`` tokens decoded autoregressively (causal attention), as OpenVLA's
    ``predict_action``. ``oft``: ``chunk_size x action_dim`` tokens in one forward pass over empty action
    placeholders with bidirectional attention (OpenVLA-OFT's parallel decoding), the action tokens read from the LM
    head over the 256 action ids (SimpleVLA-RL's discrete OFT, which gives log-probs for RL).
    """

    variant: Variant = "openvla"
    unnorm_key: str = Field(..., description="the dataset of norm_stats that un-normalises actions")
    cameras: tuple[str, ...] = Field(("agentview",), description="env cameras fed as OFT's num_images_in_input")
    image_size: int = Field(224, ge=8, description="the backbone's input side (config.json image_sizes)")
    camera_size: int | None = Field(None, ge=8, description="resolution the envs render at (None: image_size); "
                                    "the processor resizes to image_size as OpenVLA's does")
    action_dim: int = Field(7, ge=1)
    chunk_size: int = Field(1, ge=1, description="steps per decoded chunk (OFT on LIBERO: 8; OpenVLA: 1)")
    n_action_steps: int | None = Field(None, ge=1, description="steps of each chunk executed (None: all)")
    n_bins: int = Field(256, ge=2, description="action ids at the end of the vocabulary (n_action_bins)")
    use_proprio: bool = Field(False, description="a proprio token from proprio_projector after the image tokens")
    state_dim: int = Field(8, ge=1, description="proprio width (OFT on LIBERO: 8)")
    max_prompt_tokens: int = Field(64, ge=4, description="prompts are padded to this many tokens")
    point_decoding: PointDecoding = "argmax"
    action_head: Literal["tokens", "l1"] = Field("tokens", description="greedy actions from the action tokens, or "
                                                 "from OFT's L1 regression head (deterministic: no log-probs)")
    gripper: Literal["raw", "libero"] = Field("raw", description="raw: the de-tokenised value (OpenVLA's "
                                              "predict_action); libero: binarised to +-1 and inverted, as OpenVLA's "
                                              "LIBERO evaluation sends it (our LIBERO env: -1 open, +1 closed)")
    gripper_dim: int = Field(6, ge=0, description="the gripper's action dim (for gripper=libero)")

    @model_validator(mode="after")
    def _consistent(self) -> OpenVLAPolicyConfig:
        if self.n_action_steps is not None and self.n_action_steps > self.chunk_size:
            raise ValueError(f"n_action_steps {self.n_action_steps} exceeds chunk_size {self.chunk_size}")
        if self.variant == "openvla" and (self.chunk_size != 1 or len(self.cameras) != 1 or self.use_proprio):
            raise ValueError("the openvla variant decodes one step from one camera without proprio (chunk_size 1); "
                             "chunks, several cameras and proprio are OpenVLA-OFT's (variant oft)")
        if self.action_head == "l1" and self.variant != "oft":
            raise ValueError("action_head l1 is OpenVLA-OFT's regression head (variant oft)")
        return self

    @property
    def decoding(self) -> str:
        return "parallel" if self.variant == "oft" else "autoregressive"

    @property
    def num_action_tokens(self) -> int:
        return self.chunk_size * self.action_dim

    @property
    def render_size(self) -> int:
        return self.camera_size or self.image_size
