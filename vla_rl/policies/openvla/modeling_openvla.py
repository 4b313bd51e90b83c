"""OpenVLA and OpenVLA-OFT checkpoints as a `Policy`: their weights under their own names, their sequence, their
de-tokenisation; our acting (temperature, greedy, quantiles), scoring (log-probs for GRPO) and checkpoints.

Parameters (the names of the Hugging Face folder, so weights map one to one): ``vision_backbone.featurizer.*`` and
``vision_backbone.fused_featurizer.*`` (timm ViTs, `TimmViT`), ``projector.fc1/fc2(/fc3)``, ``language_model.*``
(transformers' ``LlamaForCausalLM``: ``language_model.model.layers.*``, ``language_model.lm_head.weight``) and, for
OFT, ``proprio_projector.fc1/fc2`` and ``action_head.model.*`` (the L1 regression head).

The LM's input, per row (OpenVLA inserts the image tokens after BOS)::

    [BOS] [image tokens of each camera] [proprio token (OFT)] [prompt tokens ... 29871] [action part]

``openvla`` (causal attention): the action part is the action tokens, generated one at a time; the logits at the
position of 29871 and of each action token give the next. ``oft`` (OpenVLA-OFT's parallel decoding): the action
part is ``chunk_size x action_dim`` placeholders whose embeddings are zero, then the stop token; attention is
bidirectional over the whole sequence (OpenVLA-OFT's transformers fork drops the causal mask entirely, its authors
confirm in moojink/openvla-oft issue 27), and the logits from the position of 29871 on give all action tokens in
one pass. Rows are left-aligned (padding first, masked out of attention, positions counted over real tokens only),
so a row's logits do not depend on the others' prompt lengths.

Logits are restricted to the ``n_bins`` action ids ``V - n_bins .. V - 1`` (V = 32000 for Llama-2) and divided by
the temperature both when sampling and when scoring, as SimpleVLA-RL does, so the sampled log-probs equal the
re-computed ones; a token k in [0, n_bins) is the id ``V - n_bins + k``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vla_rl.policies.base import Policy
from vla_rl.policies.openvla.configuration_openvla import (
    STOP_TOKEN,
    OpenVLAFolderError,
    OpenVLAPolicyConfig,
    is_fused,
    llama_config_dict,
    pick_unnorm_key,
    read_hf_config,
    read_json,
)
from vla_rl.policies.openvla.processor_openvla import OpenVLAActionTokenizer, OpenVLAProcessor
from vla_rl.policies.openvla.timm_vit import TimmViT, sizes_from_shapes, vit_family
from vla_rl.policies.vla.modeling_vla import POINT_DECODINGS, ActOutput, VLABatch, _sample
from vla_rl.utils.io import atomic_dir

CHECKPOINT_FORMAT = "vla-rl/openvla-v1"
SETTINGS_KEY = "vla_rl_policy"  # our acting settings, kept in an exported config.json (OpenVLA ignores the key)


class PrismaticVisionBackbone(nn.Module):
    """One featurizer, or two fused (features concatenated per patch); pixels in [-1, 1] are normalised for each
    with its own mean / std (OpenVLA's processor stacks the two normalisations as 6 channels; same values)."""

    def __init__(self, hf: dict[str, Any], shapes: dict[str, tuple[int, ...]], stats: list[tuple]) -> None:
        super().__init__()
        size = hf["image_sizes"][0]
        ids = hf["timm_model_ids"]
        self.featurizer = TimmViT(vit_family(ids[0]), sizes_from_shapes(shapes, "vision_backbone.featurizer."), size)
        self.fused_featurizer = None
        if is_fused(hf):
            if len(ids) != 2:
                raise OpenVLAFolderError(f"use_fused_vision_backbone needs two timm_model_ids, got {ids}")
            sizes = sizes_from_shapes(shapes, "vision_backbone.fused_featurizer.")
            self.fused_featurizer = TimmViT(vit_family(ids[1]), sizes, size)
        for i, (mean, std) in enumerate(stats[: 1 + (self.fused_featurizer is not None)]):
            self.register_buffer(f"mean{i}", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer(f"std{i}", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def embed_dim(self) -> int:
        return self.featurizer.embed_dim + (self.fused_featurizer.embed_dim if self.fused_featurizer else 0)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (N, 3, S, S) in [-1, 1] -> patch features (N, P, embed_dim)."""
        x01 = (pixels + 1.0) / 2.0
        feats = self.featurizer((x01 - self.mean0) / self.std0)
        if self.fused_featurizer is None:
            return feats
        return torch.cat([feats, self.fused_featurizer((x01 - self.mean1) / self.std1)], 2)


class PrismaticProjector(nn.Module):
    """Patch features -> LM width: fc1, GELU, fc2 (one featurizer) or fc1 (4x width), GELU, fc2, GELU, fc3 (fused)."""

    def __init__(self, fused: bool, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fused = fused
        if fused:
            self.fc1, self.fc2 = nn.Linear(vision_dim, 4 * vision_dim), nn.Linear(4 * vision_dim, llm_dim)
            self.fc3 = nn.Linear(llm_dim, llm_dim)
        else:
            self.fc1, self.fc2 = nn.Linear(vision_dim, llm_dim), nn.Linear(llm_dim, llm_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc2(F.gelu(self.fc1(x)))
        return self.fc3(F.gelu(x)) if self.fused else x


class ProprioProjector(nn.Module):
    """OFT's proprio token: fc1, GELU, fc2, (B, state_dim) -> (B, llm_dim)."""

    def __init__(self, state_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(state_dim, llm_dim), nn.Linear(llm_dim, llm_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class ResBlock(nn.Module):
    """x + ReLU(Linear(LayerNorm x)), its layers in ``ffn`` (OFT's MLPResNetBlock)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(x)


class MLPResNet(nn.Module):
    """LayerNorm, fc1, ReLU, residual blocks, LayerNorm, fc2 (OFT's MLPResNet)."""

    def __init__(self, blocks: int, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.layer_norm1, self.fc1 = nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden)
        self.mlp_resnet_blocks = nn.ModuleList(ResBlock(hidden) for _ in range(blocks))
        self.layer_norm2, self.fc2 = nn.LayerNorm(hidden), nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc1(self.layer_norm1(x)))
        for blk in self.mlp_resnet_blocks:
            x = blk(x)
        return self.fc2(self.layer_norm2(x))


class L1RegressionActionHead(nn.Module):
    """OFT's continuous head: the action positions' hidden states (B, T x D, h), regrouped per step
    (B, T, D x h), -> normalised actions (B, T, D)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]) -> None:
        super().__init__()
        fc1, fc2 = shapes["action_head.model.fc1.weight"], shapes["action_head.model.fc2.weight"]
        blocks = len({k.split(".")[3] for k in shapes if k.startswith("action_head.model.mlp_resnet_blocks.")})
        self.model = MLPResNet(blocks, fc1[1], fc1[0], fc2[0])

    def forward(self, hidden: torch.Tensor, chunk: int) -> torch.Tensor:
        return self.model(hidden.reshape(hidden.shape[0], chunk, -1))


def _llama(hf: dict[str, Any]) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(**llama_config_dict(hf["text_config"])))


def _image_stats(hf: dict[str, Any], preprocessor: dict[str, Any] | None) -> list[tuple]:
    """(mean, std) per backbone: the folder's preprocessor_config.json, else the timm ids' defaults."""
    if preprocessor and preprocessor.get("means") and preprocessor.get("stds"):
        return [(tuple(m), tuple(s)) for m, s in zip(preprocessor["means"], preprocessor["stds"], strict=True)]
    return [(vit_family(i).mean, vit_family(i).std) for i in hf["timm_model_ids"]]


class OpenVLAPolicy(Policy):
    """An OpenVLA / OpenVLA-OFT checkpoint acting and learning in our loops.

    Args:
        hf_config: the folder's ``config.json`` (`read_hf_config`), with its norm stats.
        config: how to act (`OpenVLAPolicyConfig`).
        shapes: every tensor's shape (`weight_shapes`); the ViT and OFT head sizes are read from it.
        tokenizer: the checkpoint's tokenizer (needed by `processor`).
        preprocessor: the folder's ``preprocessor_config.json`` (image means / stds), if any.
    """

    def __init__(self, hf_config: dict[str, Any], config: OpenVLAPolicyConfig, shapes: dict[str, tuple[int, ...]],
                 tokenizer=None, preprocessor: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.hf_config, self.config, self.tokenizer, self.preprocessor = hf_config, config, tokenizer, preprocessor
        self.component_step = 0  # OFT component files' step, kept for export
        stats = _image_stats(hf_config, preprocessor)
        self.image_stats = stats
        self.vision_backbone = PrismaticVisionBackbone(hf_config, shapes, stats)
        self.language_model = _llama(hf_config)
        h = self.language_model.config.hidden_size
        self.projector = PrismaticProjector(self.vision_backbone.fused_featurizer is not None,
                                            self.vision_backbone.embed_dim, h)
        self.proprio_projector = None
        if "proprio_projector.fc1.weight" in shapes:
            self.proprio_projector = ProprioProjector(shapes["proprio_projector.fc1.weight"][1], h)
        self.action_head = L1RegressionActionHead(shapes) if "action_head.model.fc1.weight" in shapes else None
        self._check(shapes)
        self.vocab_size = hf_config["text_config"].get("vocab_size", 32000) - hf_config.get("pad_to_multiple_of", 0)
        self.action_offset = self.vocab_size - config.n_bins
        ns = hf_config["norm_stats"][pick_unnorm_key(hf_config["norm_stats"], config.unnorm_key)]
        self.action_tokenizer = OpenVLAActionTokenizer(ns["action"], self.vocab_size, config.n_bins,
                                                       1e-8 if config.variant == "oft" else 0.0, config.gripper,
                                                       config.gripper_dim)
        self.state_stats = ns.get("proprio") if config.use_proprio else None

    def _check(self, shapes: dict[str, tuple[int, ...]]) -> None:
        c = self.config
        if c.use_proprio and self.proprio_projector is None:
            raise OpenVLAFolderError("use_proprio needs proprio_projector weights (OFT's proprio_projector--<step>_"
                                     "checkpoint.pt, or proprio_projector.* in the safetensors)")
        reads = self.proprio_projector.fc1.in_features if self.proprio_projector is not None else c.state_dim
        if c.use_proprio and reads != c.state_dim:
            raise OpenVLAFolderError(f"state_dim {c.state_dim} but the proprio projector reads {reads} dims")
        if c.action_head == "l1" and self.action_head is None:
            raise OpenVLAFolderError("action_head l1 needs OFT's action_head--<step>_checkpoint.pt in the folder")
        if len(c.cameras) > 1 and self.vision_backbone.fused_featurizer is None:
            raise OpenVLAFolderError("several cameras (OFT's num_images_in_input > 1) need the fused backbone")
        if self.hf_config["image_sizes"][0] != c.image_size:
            raise OpenVLAFolderError(f"image_size {c.image_size} but the backbone reads "
                                     f"{self.hf_config['image_sizes'][0]} px")

    # ---- sequence assembly ------------------------------------------------------------------
    def _context(self, batch: VLABatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, Lc, h) and validity (B, Lc) of [BOS][images][proprio][prompt tokens 1..]."""
        b, c = batch.pixels.shape[:2]
        embed = self.language_model.get_input_embeddings()
        dtype = embed.weight.dtype
        feats = self.vision_backbone(batch.pixels.flatten(0, 1).to(dtype))  # (B*C, P, Cv)
        img = self.projector(feats.unflatten(0, (b, c)).flatten(1, 2))  # (B, C*P, h): camera 0's patches first
        txt = embed(batch.input_ids)
        parts = [txt[:, :1], img]
        if self.config.use_proprio:
            if batch.state is None:
                raise ValueError("this policy reads proprio (config.use_proprio) but the batch has no state")
            parts.append(self.proprio_projector(batch.state.to(dtype))[:, None])
        parts.append(txt[:, 1:])
        valid = torch.cat([batch.attention_mask[:, :1].bool(),
                           torch.ones(b, sum(p.shape[1] for p in parts[1:-1]), dtype=torch.bool, device=txt.device),
                           batch.attention_mask[:, 1:].bool()], 1)
        return torch.cat(parts, 1), valid

    def _run(self, emb: torch.Tensor, valid: torch.Tensor, causal: bool, cache=None, pos: torch.Tensor | None = None,
             past_valid: torch.Tensor | None = None):
        """The LM over ``emb`` (B, T, h): left-aligned rows (``valid`` (B, T) already sorted padding-first),
        positions over real tokens; ``cache``/``pos``/``past_valid`` continue a cached decode. Returns the output."""
        keys = valid if past_valid is None else torch.cat([past_valid, valid], 1)
        if pos is None:
            pos = (valid.long().cumsum(1) - 1).clamp(min=0)
        q, k = emb.shape[1], keys.shape[1]
        allowed = keys[:, None, :].expand(-1, q, -1)
        if causal:
            allowed = allowed & torch.ones(q, k, dtype=torch.bool, device=emb.device).tril(k - q)
        rows = torch.arange(q, device=emb.device)
        allowed = allowed.clone()
        allowed[:, rows, rows + k - q] = True  # each query sees itself (a padding row would otherwise see nothing)
        mask = torch.zeros(allowed.shape, dtype=emb.dtype, device=emb.device)
        mask = mask.masked_fill(~allowed, torch.finfo(emb.dtype).min)[:, None]
        return self.language_model.model(inputs_embeds=emb, attention_mask=mask, position_ids=pos, cache=cache,
                                         use_cache=cache is not None)

    @staticmethod
    def _left_align(emb: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        order = torch.argsort(valid.int(), dim=1, stable=True)  # padding first, real tokens in their order
        return emb.gather(1, order[..., None].expand_as(emb)), valid.gather(1, order)

    def _action_rows(self) -> torch.Tensor:
        """The LM head's rows of the action ids (n_bins, h)."""
        w = self.language_model.get_output_embeddings().weight
        return w[self.action_offset : self.action_offset + self.config.n_bins]

    def action_hidden(self, batch: VLABatch, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden states (B, K, h) whose LM-head logits give the K action tokens: OFT's from one bidirectional pass
        over the placeholders; OpenVLA's teacher-forced with ``tokens`` (B, K) in [0, n_bins)."""
        emb, valid = self._context(batch)
        b, k = len(batch), self.config.num_action_tokens
        embed = self.language_model.get_input_embeddings()
        if self.config.decoding == "parallel":
            stop = embed(torch.full((b, 1), STOP_TOKEN, dtype=torch.long, device=emb.device))
            tail = torch.cat([emb.new_zeros(b, k, emb.shape[2]), stop], 1)
            first = -k - 2  # the position of 29871
        else:
            if tokens is None:
                raise ValueError("autoregressive scoring needs the action tokens (teacher forcing)")
            tail = embed(tokens[:, :-1] + self.action_offset)
            first = -k
        emb, valid = self._left_align(torch.cat([emb, tail], 1), torch.cat([valid, valid.new_ones(tail.shape[:2])], 1))
        hidden = self._run(emb, valid, causal=self.config.decoding != "parallel").last_hidden_state
        return hidden[:, first : hidden.shape[1] + first + k]

    def action_logits(self, batch: VLABatch, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, K, n_bins) of the K action tokens over the action ids."""
        return self.action_hidden(batch, tokens) @ self._action_rows().T

    # ---- acting and scoring -----------------------------------------------------------------
    def logprobs(self, batch: VLABatch, tokens: torch.Tensor, temperature: float = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropies (B, K) of ``tokens`` (B, K) in [0, n_bins) under logits / temperature."""
        batch, tokens = batch.to(self.device), tokens.to(self.device)
        logp = F.log_softmax(self.action_logits(batch, tokens).float() / temperature, -1)
        return logp.gather(-1, tokens[..., None]).squeeze(-1), -(logp.exp() * logp).sum(-1)

    @torch.no_grad()
    def act(self, batch: VLABatch, temperature: float = 1.0, greedy: bool = False,
            generator: torch.Generator | None = None, quantiles: torch.Tensor | None = None,
            point_decoding: str | None = None) -> ActOutput:
        """One chunk per row, as `VLAPolicy.act`: tokens (B, K) in [0, n_bins), their log-probs and entropies, and
        actions (B, n_action_steps, D) de-tokenised by OpenVLA's formula (with ``action_head`` l1 and ``greedy``:
        OFT's regression head's actions instead). Outputs on the CPU."""
        point = point_decoding or self.config.point_decoding
        if point not in POINT_DECODINGS:
            raise ValueError(f"unknown point_decoding {point!r}; valid: {', '.join(POINT_DECODINGS)}")
        batch = batch.to(self.device)
        cfg, regress = self.config, None
        if cfg.decoding == "parallel":
            hidden = self.action_hidden(batch)
            tokens, logp, ent = _sample((hidden @ self._action_rows().T).float(), temperature, greedy, generator,
                                        quantiles, point)
            if cfg.action_head == "l1" and greedy:
                regress = self.action_head(hidden, cfg.chunk_size).float().cpu().numpy()
        else:
            if quantiles is not None:
                raise ValueError("quantile sampling is implemented for parallel decoding (variant oft) only")
            tokens, logp, ent = self._generate(batch, temperature, greedy, generator, point)
        tokens, logp, ent = tokens.cpu(), logp.cpu(), ent.cpu()
        if regress is not None:
            actions = self.action_tokenizer.unnormalize(regress)
        else:
            ids = (tokens + self.action_offset).numpy().reshape(len(batch), cfg.chunk_size, cfg.action_dim)
            actions = self.action_tokenizer.decode(ids)
        return ActOutput(tokens, logp, ent, actions[:, : cfg.n_action_steps])

    def _generate(self, batch: VLABatch, temperature: float, greedy: bool, generator: torch.Generator | None,
                  point: str):
        """OpenVLA's autoregressive decode of ``num_action_tokens`` with a KV cache (causal attention)."""
        from transformers import DynamicCache

        emb, valid = self._left_align(*self._context(batch))
        cache = DynamicCache()
        out = self._run(emb, valid, causal=True, cache=cache)
        pos = valid.long().sum(1, keepdim=True) - 1
        hidden, toks, logps, ents = out.last_hidden_state[:, -1:], [], [], []
        embed = self.language_model.get_input_embeddings()
        for _ in range(self.config.num_action_tokens):
            t, lp, en = _sample((hidden @ self._action_rows().T).float(), temperature, greedy, generator, point=point)
            toks.append(t), logps.append(lp), ents.append(en)
            pos = pos + 1
            step = valid.new_ones(len(batch), 1)
            hidden = self._run(embed(t + self.action_offset), step, causal=True, cache=cache, pos=pos,
                               past_valid=valid).last_hidden_state
            valid = torch.cat([valid, step], 1)
        return torch.cat(toks, 1), torch.cat(logps, 1), torch.cat(ents, 1)

    def set_n_action_steps(self, n: int | None) -> None:
        """Execute the first ``n`` steps of each chunk (None: all); checked against chunk_size."""
        self.config = OpenVLAPolicyConfig.model_validate({**self.config.model_dump(), "n_action_steps": n})

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def processor(self) -> OpenVLAProcessor:
        """The matching observation processor (needs the tokenizer)."""
        if self.tokenizer is None:
            raise ValueError("this OpenVLA policy has no tokenizer: its folder lacks tokenizer.json / tokenizer.model")
        c, hf = self.config, self.hf_config
        fill = tuple(int(x * 255) for x in self.image_stats[-1][0])
        return OpenVLAProcessor(self.tokenizer, c.cameras, c.image_size, hf.get("image_resize_strategy", "letterbox"),
                                fill, c.max_prompt_tokens, int(hf.get("pad_token_id", 32000)),
                                int(llama_config_dict(hf["text_config"])["bos_token_id"]), self.state_stats)

    # ---- checkpoints ------------------------------------------------------------------------
    def _state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}

    def _write_side_files(self, tmp: Path) -> None:
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(tmp))
        if self.preprocessor is not None:
            (tmp / "preprocessor_config.json").write_text(json.dumps(self.preprocessor, indent=2))

    def save_pretrained(self, path: str | Path, extra: dict | None = None) -> Path:
        """Our checkpoint: ``config.json`` (format, acting settings, the OpenVLA config with its norm stats),
        ``model.safetensors`` (every tensor under OpenVLA's names, OFT's components included), the tokenizer."""
        from safetensors.torch import save_file

        meta = {"format": CHECKPOINT_FORMAT, "policy": self.config.model_dump(mode="json"), "openvla": self.hf_config,
                "component_step": self.component_step, "extra": extra or {}}
        state = self._state()

        def write(tmp: Path) -> None:
            (tmp / "config.json").write_text(json.dumps(meta, indent=2))
            save_file(state, str(tmp / "model.safetensors"))
            self._write_side_files(tmp)

        return atomic_dir(path, write)

    def save_openvla(self, path: str | Path, max_shard_bytes: int = 5 * 2**30) -> Path:
        """Write the OpenVLA Hugging Face layout (what OpenVLA's and OFT's tools load): ``config.json`` with
        ``norm_stats`` (and our acting settings under ``vla_rl_policy``, which they ignore),
        ``dataset_statistics.json``, safetensors shards + ``model.safetensors.index.json``, OFT's
        ``action_head--<step>_checkpoint.pt`` / ``proprio_projector--<step>_checkpoint.pt``, the tokenizer."""
        from vla_rl.policies.openvla.checkpoint_openvla import write_weights

        hf = {**self.hf_config, SETTINGS_KEY: self.config.model_dump(mode="json")}
        state = self._state()

        def write(tmp: Path) -> None:
            (tmp / "config.json").write_text(json.dumps(hf, indent=2))
            (tmp / "dataset_statistics.json").write_text(json.dumps(self.hf_config["norm_stats"], indent=2))
            write_weights(tmp, state, max_shard_bytes, self.component_step)
            self._write_side_files(tmp)

        return atomic_dir(path, write)

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str = "cpu", dtype: torch.dtype | None = None,
                        **settings: Any) -> OpenVLAPolicy:
        """Load our checkpoint (`save_pretrained`) or an OpenVLA / OpenVLA-OFT Hugging Face folder. ``settings``
        override the acting settings (`OpenVLAPolicyConfig` fields: ``unnorm_key``, ``variant``, ``chunk_size``,
        ``cameras``...); for a Hugging Face folder the rest are inferred (`default_settings`). ``dtype``: cast the
        weights (e.g. torch.bfloat16); None keeps float32."""
        from vla_rl.policies.openvla import checkpoint_openvla as ckpt

        path = Path(path)
        meta = read_json(path / "config.json")
        if meta.get("format") == CHECKPOINT_FORMAT:
            hf = meta["openvla"]
            cfg = OpenVLAPolicyConfig.model_validate({**meta["policy"], **settings})
            shapes, load = _safetensors_shapes(path / "model.safetensors"), lambda: _load_single(path)
            step = int(meta.get("component_step", 0))
        else:
            hf = read_hf_config(path)
            shapes = ckpt.weight_shapes(path)
            cfg = default_settings(hf, shapes, **settings)
            load = lambda: ckpt.load_weights(path)  # noqa: E731
            files = ckpt.component_files(path)
            step = max((ckpt.component_step(f) for f, _ in files.values()), default=0)
        pre = path / "preprocessor_config.json"
        policy = cls(hf, cfg, shapes, _tokenizer(path), read_json(pre) if pre.is_file() else None)
        policy.component_step = step
        _load_strict(policy, load(), path)
        if dtype is not None:
            policy.to(dtype)
        return policy.to(map_location)


def default_settings(hf: dict[str, Any], shapes: dict[str, tuple[int, ...]], **settings: Any) -> OpenVLAPolicyConfig:
    """Acting settings for a Hugging Face folder: those it carries (``vla_rl_policy``, from our export), then
    ``settings``, then inferred: OFT when it has OFT's components (action head, proprio projector) or config keys
    (``num_images_in_input``, ``use_proprio``), with chunk 8 (OFT's LIBERO constant) and proprio when it has a
    projector; the action dim from the norm stats; the only dataset as ``unnorm_key``."""
    given = {**hf.get(SETTINGS_KEY, {}), **settings}
    oft_keys = any(k.startswith(("action_head.", "proprio_projector.")) for k in shapes)
    variant = given.get("variant") or ("oft" if oft_keys or "num_images_in_input" in hf or "use_proprio" in hf
                                       else "openvla")
    key = pick_unnorm_key(hf["norm_stats"], given.get("unnorm_key"))
    proprio = shapes.get("proprio_projector.fc1.weight")
    n_images = int(hf.get("num_images_in_input", 1))
    inferred: dict[str, Any] = {
        "variant": variant, "unnorm_key": key, "image_size": hf["image_sizes"][0],
        "action_dim": len(hf["norm_stats"][key]["action"]["q01"]), "n_bins": int(hf.get("n_action_bins", 256)),
        "chunk_size": 8 if variant == "oft" else 1,
        "cameras": ("agentview", "wrist")[:n_images] if variant == "oft" else ("agentview",),
        "use_proprio": variant == "oft" and proprio is not None,
    }
    if proprio is not None:
        inferred["state_dim"] = proprio[1]
    return OpenVLAPolicyConfig.model_validate({**inferred, **given})


def _safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    from vla_rl.policies.checkpoint import CheckpointError

    if not file.is_file():
        raise CheckpointError(f"{file}: missing; a checkpoint folder holds config.json and model.safetensors")
    with safe_open(str(file), "pt") as st:
        return {k: tuple(st.get_slice(k).get_shape()) for k in st.keys()}  # noqa: SIM118


def _load_single(path: Path) -> dict[str, torch.Tensor]:
    from vla_rl.policies.checkpoint import load_weights

    return load_weights(path / "model.safetensors")


def _tokenizer(path: Path):
    """The folder's tokenizer (tokenizer.json, else tokenizer.model through AutoTokenizer), or None."""
    if (path / "tokenizer.json").is_file():
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast.from_pretrained(str(path))
    if (path / "tokenizer.model").is_file():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(path))
    return None


def _load_strict(policy: OpenVLAPolicy, weights: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``weights``, refusing missing, unexpected or mis-shaped tensors by name."""
    from vla_rl.policies.checkpoint import state_mismatches

    problems = state_mismatches(policy.state_dict(), weights)
    if problems:
        raise OpenVLAFolderError(f"{path}: weights do not match the architecture its config.json describes: "
                                 + "; ".join(problems[:15]))
    policy.load_state_dict(weights)
