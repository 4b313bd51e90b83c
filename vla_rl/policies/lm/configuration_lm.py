"""Text language-model policy configuration: typed, validated, with presets by name.

The model is a transformers causal LM (Llama or Qwen2 architecture) built from this config, so nothing is
downloaded. Any Hugging Face causal LM in a local folder can be loaded instead with
`LMPolicy.from_pretrained(path)` (its own ``config.json`` then describes it).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vla_rl.config import Config


class LMPolicyConfig(Config):
    """A small decoder-only LM built from config (``vocab_size`` None: the tokenizer's size)."""

    type: Literal["llama", "qwen2"] = "llama"
    hidden_size: int = Field(64, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int | None = Field(None, ge=1, description="grouped-query attention; None: num_heads")
    intermediate_size: int = Field(128, ge=8)
    vocab_size: int | None = Field(None, ge=8, description="None: the tokenizer's size")
    max_position_embeddings: int = Field(512, ge=16)
    rms_norm_eps: float = Field(1e-5, gt=0)
    rope_theta: float = Field(10000.0, gt=0)
    tie_word_embeddings: bool = Field(True, description="share input and output embeddings (small models)")
    tokenizer_vocab_size: int = Field(
        512, ge=300, description="BPE vocabulary of the locally built tokenizer (256 bytes + specials + merges)"
    )

    @model_validator(mode="after")
    def _divisible(self) -> LMPolicyConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ValueError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {kv}")
        return self


LM_PRESETS: dict[str, dict] = {
    "tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128},  # tests
    "mini": {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "intermediate_size": 512},  # CPU RL runs
    "small": {"hidden_size": 256, "num_layers": 4, "num_heads": 4, "intermediate_size": 1024},  # the bench model
}


def lm_preset(name: str, **overrides) -> LMPolicyConfig:
    """The preset ``name`` (``tiny``, ``mini``, ``small``) with keyword overrides."""
    if name not in LM_PRESETS:
        raise ValueError(f"unknown LM preset {name!r}; valid: {', '.join(LM_PRESETS)}")
    return LMPolicyConfig(**(LM_PRESETS[name] | overrides))
