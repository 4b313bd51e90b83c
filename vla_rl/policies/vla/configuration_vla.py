"""VLA configuration: typed, validated, with presets (a tiny CPU one and OpenVLA-7B shapes)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vla_rl.config import Config


class VisionConfig(Config):
    """A ViT-style image encoder built from config (SigLIP's or ViT's architecture from transformers)."""

    type: Literal["siglip", "vit"] = "siglip"
    image_size: int = Field(64, ge=8)
    patch_size: int = Field(8, ge=1)
    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(256, ge=8)
    conv_stem: bool = Field(False, description="hybrid ViT: a stride-2 conv stack replaces the linear patch "
                            "embedding (patch_size must be a power of two)")
    keypoints: int = Field(0, ge=0, description="spatial-softmax keypoints per camera from a small conv branch at "
                           "half resolution, read out as one extra image token (0: off)")
    merge: int = Field(1, ge=1, description="pixel shuffle before the projector: each r x r block of patch "
                       "features becomes one token of r^2 x hidden_size features (r^2 fewer image tokens; 1: off)")

    @model_validator(mode="after")
    def _divisible(self) -> VisionConfig:
        if self.conv_stem and (self.patch_size & (self.patch_size - 1) or self.patch_size < 2):
            raise ValueError(f"conv_stem needs a power-of-two patch_size >= 2, got {self.patch_size}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        if self.merge > 1 and self.type != "siglip":
            raise ValueError("merge is implemented for the siglip encoder only (a ViT adds a CLS token to its grid)")
        if (self.image_size // self.patch_size) % self.merge:
            raise ValueError(f"the patch grid side {self.image_size // self.patch_size} must be a multiple of "
                             f"merge {self.merge}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        return self


class LMConfig(Config):
    """The causal language model (Llama architecture from transformers)."""

    type: Literal["llama"] = "llama"
    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    num_kv_heads: int | None = None
    intermediate_size: int = Field(256, ge=8)
    vocab_size: int | None = Field(None, description="None: the tokenizer's size (action ids are the last n_bins)")
    max_position_embeddings: int = Field(1024, ge=16)
    rms_norm_eps: float = 1e-5


PointDecoding = Literal["argmax", "median"]  # how greedy acting picks a token (`VLAConfig.point_decoding`)


class VLAConfig(Config):
    """OpenVLA-style policy: cameras -> vision encoder -> projector -> LM with instruction + proprio,
    then ``chunk_size x action_dim`` action tokens decoded in parallel (OFT) or autoregressively."""

    vision: VisionConfig = Field(default_factory=VisionConfig)
    lm: LMConfig = Field(default_factory=LMConfig)
    cameras: tuple[str, ...] = ("agentview",)
    action_dim: int = Field(7, ge=1)
    chunk_size: int = Field(8, ge=1)
    n_action_steps: int | None = Field(
        None, ge=1, description="steps of each decoded chunk the robot executes before the policy is called again "
        "(receding horizon, LeRobot's n_action_steps); None: the whole chunk")
    n_bins: int = Field(256, ge=2)
    binary_dims: tuple[int, ...] = (6,)
    use_proprio: bool = True
    state_dim: int = Field(8, ge=1)
    max_instruction_tokens: int = Field(24, ge=1)
    decoding: Literal["parallel", "autoregressive"] = "parallel"
    point_decoding: PointDecoding = Field(
        "argmax", description="how greedy (deterministic) acting picks each action token: its most likely bin, "
        "or the median of its distribution over the ordered bins (robust when RL leaves it broad and flat-topped)")
    camera_size: int | None = Field(None, ge=8, description="resolution the training images were rendered at; "
                                    "envs render at it and the processor resizes (None: vision.image_size)")

    @model_validator(mode="after")
    def _horizon(self) -> VLAConfig:
        if self.n_action_steps is not None and self.n_action_steps > self.chunk_size:
            raise ValueError(f"n_action_steps {self.n_action_steps} exceeds chunk_size {self.chunk_size}: the robot "
                             "can only execute steps the policy decoded (set n_action_steps <= chunk_size or null)")
        return self

    @property
    def num_action_tokens(self) -> int:
        return self.chunk_size * self.action_dim

    @property
    def render_size(self) -> int:
        """Camera resolution to render for this policy (the same pipeline as its training data)."""
        return self.camera_size or self.vision.image_size


def vla_preset(name: str) -> VLAConfig:
    """``tiny`` (trains on a CPU) or ``openvla-7b`` (Llama-2 7B + SigLIP-so400m/14 at 224 px shapes)."""
    if name == "tiny":
        return VLAConfig()
    if name == "openvla-7b":
        return VLAConfig(
            vision=VisionConfig(type="siglip", image_size=224, patch_size=14, hidden_size=1152, num_layers=27,
                                num_heads=16, intermediate_size=4304),
            lm=LMConfig(hidden_size=4096, num_layers=32, num_heads=32, intermediate_size=11008, vocab_size=32000,
                        max_position_embeddings=4096),
            cameras=("agentview", "wrist"),
        )
    raise ValueError(f"unknown VLA preset {name!r}; valid: tiny, openvla-7b")
