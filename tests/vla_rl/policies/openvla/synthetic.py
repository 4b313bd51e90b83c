"""Synthetic OpenVLA / OpenVLA-OFT Hugging Face folders for the tests: OpenVLA's config.json fields and its exact
parameter names (listed here from timm's and OpenVLA's definitions, not taken from our model), tiny sizes, random
weights; a locally trained tokenizer whose BOS / EOS ids are Llama's (1, 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

DINO, SIGLIP = "vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"
IMAGE, PATCH, VIT, VIT_MLP, VIT_DEPTH = 28, 14, 32, 48, 3  # 2 x 2 patches per image
H, LAYERS, HEADS, FFN, VOCAB = 32, 2, 4, 64, 32064
DATASETS = ("libero_spatial_no_noops", "bridge_orig")


def vit_state(prefix: str, reg: int, cls: bool, layer_scale: bool, pool: bool, gen: torch.Generator) -> dict:
    """A timm ViT's tensors (num_classes=0) with OpenVLA's LayerScale rename, as its checkpoints hold them."""
    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=gen) * scale

    n = (IMAGE // PATCH) ** 2
    s = {"patch_embed.proj.weight": r(VIT, 3, PATCH, PATCH, scale=0.05), "patch_embed.proj.bias": r(VIT),
         "pos_embed": r(1, n + (0 if reg or not cls else 1), VIT), "norm.weight": 1 + r(VIT), "norm.bias": r(VIT)}
    if cls:
        s["cls_token"] = r(1, 1, VIT)
    if reg:
        s["reg_token"] = r(1, reg, VIT)
    for i in range(VIT_DEPTH):
        b = f"blocks.{i}."
        s |= {b + "norm1.weight": 1 + r(VIT), b + "norm1.bias": r(VIT), b + "attn.qkv.weight": r(3 * VIT, VIT),
              b + "attn.qkv.bias": r(3 * VIT), b + "attn.proj.weight": r(VIT, VIT), b + "attn.proj.bias": r(VIT),
              b + "norm2.weight": 1 + r(VIT), b + "norm2.bias": r(VIT), b + "mlp.fc1.weight": r(VIT_MLP, VIT),
              b + "mlp.fc1.bias": r(VIT_MLP), b + "mlp.fc2.weight": r(VIT, VIT_MLP), b + "mlp.fc2.bias": r(VIT)}
        if layer_scale:
            s |= {b + "ls1.scale_factor": r(VIT) + 0.5, b + "ls2.scale_factor": r(VIT) + 0.5}
    if pool:
        s |= {"attn_pool.latent": r(1, 1, VIT), "attn_pool.q.weight": r(VIT, VIT), "attn_pool.q.bias": r(VIT),
              "attn_pool.kv.weight": r(2 * VIT, VIT), "attn_pool.kv.bias": r(2 * VIT),
              "attn_pool.proj.weight": r(VIT, VIT), "attn_pool.proj.bias": r(VIT), "attn_pool.norm.weight": 1 + r(VIT),
              "attn_pool.norm.bias": r(VIT), "attn_pool.mlp.fc1.weight": r(VIT_MLP, VIT),
              "attn_pool.mlp.fc1.bias": r(VIT_MLP), "attn_pool.mlp.fc2.weight": r(VIT, VIT_MLP),
              "attn_pool.mlp.fc2.bias": r(VIT)}
    return {prefix + k: v for k, v in s.items()}


def model_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor of a fused DINOv2 + SigLIP OpenVLA with a Llama LM, under the Hugging Face folder's names."""
    gen = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=gen) * scale

    s = vit_state("vision_backbone.featurizer.", 4, True, True, False, gen)
    s |= vit_state("vision_backbone.fused_featurizer.", 0, False, False, True, gen)
    v = 2 * VIT
    s |= {"projector.fc1.weight": r(4 * v, v), "projector.fc1.bias": r(4 * v), "projector.fc2.weight": r(H, 4 * v),
          "projector.fc2.bias": r(H), "projector.fc3.weight": r(H, H), "projector.fc3.bias": r(H)}
    lm = "language_model."
    s |= {lm + "model.embed_tokens.weight": r(VOCAB, H), lm + "model.norm.weight": 1 + r(H),
          lm + "lm_head.weight": r(VOCAB, H, scale=1.0)}
    for i in range(LAYERS):
        b = f"{lm}model.layers.{i}."
        s |= {b + f"self_attn.{p}_proj.weight": r(H, H) for p in "qkvo"}
        s |= {b + "mlp.gate_proj.weight": r(FFN, H), b + "mlp.up_proj.weight": r(FFN, H),
              b + "mlp.down_proj.weight": r(H, FFN), b + "input_layernorm.weight": 1 + r(H),
              b + "post_attention_layernorm.weight": 1 + r(H)}
    return s


def oft_components(seed: int = 1, action_dim: int = 7, state_dim: int = 8) -> dict[str, dict[str, torch.Tensor]]:
    """OFT's L1 head and proprio projector, keys with DDP's ``module.`` prefix as OFT's training saves them."""
    gen = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=gen) * scale

    head = {"model.layer_norm1.weight": 1 + r(action_dim * H), "model.layer_norm1.bias": r(action_dim * H),
            "model.fc1.weight": r(H, action_dim * H), "model.fc1.bias": r(H), "model.layer_norm2.weight": 1 + r(H),
            "model.layer_norm2.bias": r(H), "model.fc2.weight": r(action_dim, H), "model.fc2.bias": r(action_dim)}
    for i in range(2):
        head |= {f"model.mlp_resnet_blocks.{i}.ffn.0.weight": 1 + r(H), f"model.mlp_resnet_blocks.{i}.ffn.0.bias": r(H),
                 f"model.mlp_resnet_blocks.{i}.ffn.1.weight": r(H, H), f"model.mlp_resnet_blocks.{i}.ffn.1.bias": r(H)}
    proprio = {"fc1.weight": r(H, state_dim), "fc1.bias": r(H), "fc2.weight": r(H, H), "fc2.bias": r(H)}
    return {"action_head": {"module." + k: v for k, v in head.items()},
            "proprio_projector": {"module." + k: v for k, v in proprio.items()}}


def norm_stats(datasets: tuple[str, ...] = DATASETS, action_dim: int = 7, state_dim: int = 8) -> dict:
    """The datasets' statistics in OpenVLA's layout; the gripper (last dim) un-masked."""
    rng = np.random.default_rng(0)
    out = {}
    for name in datasets:
        lo = -rng.uniform(0.2, 1.0, action_dim)
        hi = rng.uniform(0.2, 1.0, action_dim)
        lo[-1], hi[-1] = 0.0, 1.0
        act = {"mean": ((lo + hi) / 2).tolist(), "std": (hi - lo).tolist(), "max": hi.tolist(), "min": lo.tolist(),
               "q01": lo.tolist(), "q99": hi.tolist(), "mask": [True] * (action_dim - 1) + [False]}
        prop = {"mean": [0.0] * state_dim, "std": [1.0] * state_dim, "max": [1.0] * state_dim,
                "min": [-1.0] * state_dim, "q01": [-1.0] * state_dim, "q99": [1.0] * state_dim}
        out[name] = {"action": act, "proprio": prop, "num_transitions": 1000, "num_trajectories": 10}
    return out


def hf_config(stats: dict) -> dict:
    """config.json as OpenVLA's OpenVLAConfig writes it (text_config: the diff over Llama-2-7B's defaults)."""
    return {
        "architectures": ["OpenVLAForActionPrediction"], "arch_specifier": "no-align+fused-gelu-mlp",
        "auto_map": {"AutoConfig": "configuration_prismatic.OpenVLAConfig",
                     "AutoModelForVision2Seq": "modeling_prismatic.OpenVLAForActionPrediction"},
        "hf_llm_id": "meta-llama/Llama-2-7b-hf", "image_resize_strategy": "resize-naive", "image_sizes": [IMAGE, IMAGE],
        "llm_backbone_id": "llama2-7b-pure", "llm_max_length": 2048, "model_type": "openvla", "n_action_bins": 256,
        "norm_stats": stats, "output_projector_states": False, "pad_to_multiple_of": 64, "pad_token_id": 32000,
        "text_config": {"model_type": "llama", "pad_token_id": 32000, "torch_dtype": "bfloat16", "vocab_size": VOCAB,
                        "hidden_size": H, "intermediate_size": FFN, "num_hidden_layers": LAYERS,
                        "num_attention_heads": HEADS},
        "timm_model_ids": [DINO, SIGLIP], "timm_override_act_layers": [None, None], "torch_dtype": "bfloat16",
        "transformers_version": "4.40.1", "use_fused_vision_backbone": True,
        "vision_backbone_id": "dinosiglip-vit-so-224px",
    }


def tokenizer():
    """A small BPE tokenizer with <s> = 1, </s> = 2 that prepends <s>, as Llama-2's does."""
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    from vla_rl.policies.tokenizer import SPECIAL, train_byte_bpe

    texts = ["In: What action should the robot take to reach the red target?\nOut:",
             "put the bowl on the plate", "pick up the cube", "open the drawer"] * 4
    core = train_byte_bpe(texts, 300)
    assert core.token_to_id("<s>") == 1 and core.token_to_id("</s>") == 2
    core.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL)


def write_folder(path: Path, oft: bool = False, shards: int = 2, seed: int = 0, component_prefix: bool = True,
                 datasets: tuple[str, ...] = DATASETS, num_images: int | None = None) -> Path:
    """An OpenVLA (``oft``: OpenVLA-OFT, with its two component files) Hugging Face folder at ``path``:
    config.json, dataset_statistics.json (the norm stats of ``datasets``), ``shards`` safetensors shards + index
    (1: model.safetensors), tokenizer; ``num_images``: OFT's ``num_images_in_input`` in config.json."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    stats = norm_stats(datasets)
    cfg = hf_config(stats) | ({"num_images_in_input": num_images} if num_images else {})
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    (path / "dataset_statistics.json").write_text(json.dumps(stats, indent=2))
    state = model_state(seed)
    keys = list(state)
    if shards == 1:
        save_file(state, str(path / "model.safetensors"))
    else:
        parts = np.array_split(np.arange(len(keys)), shards)
        weight_map = {}
        for i, idx in enumerate(parts, 1):
            name = f"model-{i:05d}-of-{shards:05d}.safetensors"
            save_file({keys[j]: state[keys[j]] for j in idx}, str(path / name))
            weight_map |= {keys[j]: name for j in idx}
        (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if oft:
        for name, part in oft_components().items():
            if not component_prefix:
                part = {k.removeprefix("module."): v for k, v in part.items()}
            torch.save(part, path / f"{name}--150000_checkpoint.pt")
    tokenizer().save_pretrained(str(path))
    return path
