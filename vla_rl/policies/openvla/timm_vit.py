"""The vision transformers OpenVLA's featurizers are, in plain torch, with timm's parameter names and shapes.

OpenVLA builds each featurizer with ``timm.create_model(<id>, num_classes=0, img_size=...)`` (timm 0.9.10-0.9.16),
renames every LayerScale ``gamma`` to ``scale_factor`` (Hugging Face rewrites parameters named ``gamma`` on load),
and reads the output of the second-to-last block with the prefix tokens (class, registers) dropped and no final
norm (``get_intermediate_layers(n={depth - 2})``). `TimmViT` holds exactly the parameters of that timm model
(``patch_embed.proj``, ``cls_token``, ``reg_token``, ``pos_embed``, ``norm_pre``, ``blocks.{i}.{norm1, attn.qkv,
attn.proj, ls1.scale_factor, norm2, mlp.fc1, mlp.fc2, ls2.scale_factor}``, ``norm``, ``attn_pool.*``), so a
checkpoint's ``vision_backbone.featurizer.*`` tensors load one to one; the final block, ``norm`` and the SigLIP
attention-pool head are held (they are in the checkpoints) but never run, as in OpenVLA.

Equivalence to timm is by construction (the same names, shapes and maths: pre-norm blocks, fused qkv, exact GELU
or QuickGELU, LayerNorm eps 1e-6, or 1e-5 for the CLIP models built with ``nn.LayerNorm``) and untested here:
timm needs torchvision, whose wheel does not load beside this project's torch build.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ViTFamily:
    """What a timm id fixes beyond the sizes (which are read from the weights): heads, prefix tokens, layer scale,
    pre-norm, the attention-pool head, the activation, the LayerNorm eps and the image normalisation."""

    num_heads: int
    class_token: bool = True
    reg_tokens: int = 0
    no_embed_class: bool = False
    layer_scale: bool = False
    pre_norm: bool = False
    attn_pool: bool = False
    act: str = "gelu"
    norm_eps: float = 1e-6
    mean: tuple[float, float, float] = HALF
    std: tuple[float, float, float] = HALF


# The timm ids OpenVLA's configs name (`VISION_BACKBONE_TO_TIMM_ID` in its configuration_prismatic.py), by the part
# before the pretrained tag; the values are timm 0.9.16's model definitions and default preprocessing.
FAMILIES: dict[str, ViTFamily] = {
    "vit_large_patch14_reg4_dinov2": ViTFamily(16, reg_tokens=4, no_embed_class=True, layer_scale=True,
                                               mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "vit_so400m_patch14_siglip_224": ViTFamily(16, class_token=False, attn_pool=True),
    "vit_so400m_patch14_siglip_384": ViTFamily(16, class_token=False, attn_pool=True),
    "vit_large_patch14_clip_224": ViTFamily(16, pre_norm=True, act="quick_gelu", norm_eps=1e-5, mean=CLIP_MEAN,
                                            std=CLIP_STD),
    "vit_large_patch14_clip_336": ViTFamily(16, pre_norm=True, act="quick_gelu", norm_eps=1e-5, mean=CLIP_MEAN,
                                            std=CLIP_STD),
    "vit_large_patch16_224": ViTFamily(16),
}


def vit_family(timm_id: str) -> ViTFamily:
    """The family of a timm id such as ``vit_large_patch14_reg4_dinov2.lvd142m``."""
    base = timm_id.split(".")[0]
    if base not in FAMILIES:
        raise ValueError(f"vision backbone {timm_id!r} is not supported; supported timm ids: {', '.join(FAMILIES)}")
    return FAMILIES[base]


@dataclass(frozen=True)
class ViTSizes:
    """The sizes of one featurizer, read from its weights (`sizes_from_shapes`): width, blocks, patch side, MLP
    hidden width, and the attention pool's MLP width (0: no pool)."""

    embed_dim: int
    depth: int
    patch_size: int
    mlp_hidden: int
    pool_mlp_hidden: int = 0


def sizes_from_shapes(shapes: dict[str, tuple[int, ...]], prefix: str) -> ViTSizes:
    """The `ViTSizes` of the featurizer whose parameters are named ``prefix`` + timm name in ``shapes``."""
    def shape(name: str) -> tuple[int, ...]:
        if prefix + name not in shapes:
            raise ValueError(f"the checkpoint has no {prefix + name}: not a timm ViT featurizer")
        return shapes[prefix + name]

    proj = shape("patch_embed.proj.weight")  # (C, 3, p, p)
    depth = len({k[len(prefix):].split(".")[1] for k in shapes if k.startswith(prefix + "blocks.")})
    pool = shapes.get(prefix + "attn_pool.mlp.fc1.weight", (0,))[0]
    return ViTSizes(proj[0], depth, proj[2], shape("blocks.0.mlp.fc1.weight")[0], pool)


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> (B, N, C) by a stride-p convolution (``proj``), row-major."""

    def __init__(self, patch: int, dim: int, bias: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (bias) and an output ``proj``."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"ViT width {dim} is not divisible by its {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the CLIP activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Mlp(nn.Module):
    """``fc1`` -> activation -> ``fc2``."""

    def __init__(self, dim: int, hidden: int, act: str = "gelu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = QuickGELU() if act == "quick_gelu" else nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel scale, its parameter named ``scale_factor`` (OpenVLA's rename of timm's ``gamma``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale_factor = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale_factor


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1 x)), then x + ls2(mlp(norm2 x))."""

    def __init__(self, dim: int, heads: int, hidden: int, family: ViTFamily) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=family.norm_eps)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim) if family.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=family.norm_eps)
        self.mlp = Mlp(dim, hidden, family.act)
        self.ls2 = LayerScale(dim) if family.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class AttentionPoolLatent(nn.Module):
    """timm's latent-query attention pool (SigLIP's ``map`` head): parameters only, since OpenVLA reads patch
    features before it; kept so that the checkpoint's ``attn_pool.*`` tensors load and are written back."""

    def __init__(self, dim: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden)


class TimmViT(nn.Module):
    """A timm ``VisionTransformer`` (``num_classes=0``) as OpenVLA uses it: `forward` maps normalised pixels
    (B, 3, S, S) to the second-to-last block's patch tokens (B, (S / p)^2, C), prefix tokens dropped, no norm.

    Args:
        family: the timm id's structure (`vit_family`).
        sizes: the widths, depth and patch side (`sizes_from_shapes`).
        image_size: the input side S (OpenVLA's ``image_sizes``), a multiple of the patch side.
    """

    def __init__(self, family: ViTFamily, sizes: ViTSizes, image_size: int) -> None:
        super().__init__()
        if image_size % sizes.patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {sizes.patch_size}")
        if sizes.depth < 2:
            raise ValueError(f"OpenVLA reads the second-to-last block; this ViT has {sizes.depth} block(s)")
        dim, self.family, self.sizes = sizes.embed_dim, family, sizes
        self.num_patches = (image_size // sizes.patch_size) ** 2
        self.num_prefix_tokens = int(family.class_token) + family.reg_tokens
        self.patch_embed = PatchEmbed(sizes.patch_size, dim, bias=not family.pre_norm)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if family.class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, family.reg_tokens, dim)) if family.reg_tokens else None
        embed_len = self.num_patches + (0 if family.no_embed_class else self.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.randn(1, embed_len, dim) * 0.02)
        self.norm_pre = nn.LayerNorm(dim, eps=family.norm_eps) if family.pre_norm else nn.Identity()
        self.blocks = nn.Sequential(*[Block(dim, family.num_heads, sizes.mlp_hidden, family)
                                      for _ in range(sizes.depth)])
        self.norm = nn.LayerNorm(dim, eps=family.norm_eps)
        self.attn_pool = AttentionPoolLatent(dim, sizes.pool_mlp_hidden, family.norm_eps) if family.attn_pool else None

    @property
    def embed_dim(self) -> int:
        return self.sizes.embed_dim

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with the position embedding and the prefix tokens, as timm's ``_pos_embed``."""
        x = self.patch_embed(x)
        prefix = [t.expand(x.shape[0], -1, -1) for t in (self.cls_token, self.reg_token) if t is not None]
        if self.family.no_embed_class:  # the position embedding covers the patches only
            return torch.cat([*prefix, x + self.pos_embed], 1)
        return torch.cat([*prefix, x], 1) + self.pos_embed

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels float (B, 3, S, S), normalised with the family's mean / std -> features (B, N, C)."""
        x = self.norm_pre(self._tokens(pixels))
        for blk in self.blocks[: self.sizes.depth - 1]:  # through block depth - 2, the one OpenVLA reads
            x = blk(x)
        return x[:, self.num_prefix_tokens:]
