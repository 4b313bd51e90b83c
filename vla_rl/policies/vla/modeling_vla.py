"""The OpenVLA-style action-token policy.

Sequence fed to the causal LM (one row per observation)::

    [image tokens of each camera] [instruction tokens (padded)] [proprio token] [action part]

Parallel decoding (OpenVLA-OFT): the action part is ``K = chunk_size * action_dim`` learned slot
embeddings; one forward pass gives the logits of all K tokens (slot k predicts token k). OFT lets the
slots attend to each other bidirectionally; we keep the LM's causal mask (slot k sees slots < k, which
are constants, so the K tokens are still independent given the context) and so need no custom mask.
Autoregressive decoding (OpenVLA): the action part is the action tokens themselves, predicted one by
one with the KV cache; training scores them in one teacher-forced pass.

Logits are restricted to the ``n_bins`` action ids (the last ids of the vocabulary) before sampling,
as SimpleVLA-RL does, and divided by the temperature both when sampling and when scoring, so that the
sampled log-probs equal the re-computed ones (PPO's ratio starts at 1).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vla_rl.policies.base import Policy, multinomial
from vla_rl.policies.vla.configuration_vla import PointDecoding, VLAConfig
from vla_rl.policies.vla.processor_vla import ActionTokenizer, NormStats, VLAProcessor
from vla_rl.utils.io import atomic_dir


@dataclass
class VLABatch:
    """Model inputs. pixels float (B, C, 3, S, S) in [-1, 1] for C cameras; input_ids int64 (B, L);
    attention_mask int64 (B, L); state float (B, state_dim) normalised."""

    pixels: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    state: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> VLABatch:
        return VLABatch(self.pixels.to(device), self.input_ids.to(device), self.attention_mask.to(device),
                        None if self.state is None else self.state.to(device))

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def index(self, idx: torch.Tensor | slice) -> VLABatch:
        return VLABatch(self.pixels[idx], self.input_ids[idx], self.attention_mask[idx],
                        None if self.state is None else self.state[idx])


@dataclass
class ActOutput:
    """tokens int64 (B, K) in [0, n_bins); logprobs, entropy float (B, K); actions float32 (B, T, D): the chunk's
    first T = ``config.n_action_steps`` (or all chunk_size) steps, the ones to execute."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    entropy: torch.Tensor
    actions: np.ndarray


def _vision_model(cfg: VLAConfig) -> nn.Module:
    v = cfg.vision
    if v.type == "siglip":
        from transformers import SiglipVisionConfig, SiglipVisionModel

        model = SiglipVisionModel(SiglipVisionConfig(
            image_size=v.image_size, patch_size=v.patch_size, hidden_size=v.hidden_size,
            num_hidden_layers=v.num_layers, num_attention_heads=v.num_heads, intermediate_size=v.intermediate_size))
        embeddings = model.embeddings
    else:
        from transformers import ViTConfig, ViTModel

        model = ViTModel(ViTConfig(
            image_size=v.image_size, patch_size=v.patch_size, hidden_size=v.hidden_size,
            num_hidden_layers=v.num_layers, num_attention_heads=v.num_heads, intermediate_size=v.intermediate_size),
            add_pooling_layer=False)
        embeddings = model.embeddings.patch_embeddings
        if v.conv_stem:
            raise ValueError("conv_stem is implemented for the siglip encoder only")
    if v.conv_stem:
        embeddings.patch_embedding = conv_stem(v.patch_size, v.hidden_size)
    return model


def merge_patches(feats: torch.Tensor, r: int) -> torch.Tensor:
    """Pixel shuffle (space-to-depth) of a square patch grid: (N, g*g, c) row-major -> (N, (g/r)^2, r*r*c),
    each output token the features of one r x r block, concatenated row by row. r = 1 returns ``feats``."""
    if r == 1:
        return feats
    n, p, c = feats.shape
    g = math.isqrt(p)
    x = feats.view(n, g // r, r, g // r, r, c).permute(0, 1, 3, 2, 4, 5)  # (N, row block, col block, r, r, c)
    return x.reshape(n, (g // r) ** 2, r * r * c)


class ConvStem(nn.Sequential):
    """A conv stack standing in for a ViT's patch embedding; ``weight`` (its last conv's) is what the
    transformers embedding modules read to pick the input dtype."""

    @property
    def weight(self) -> torch.Tensor:
        return self[-1].weight


def conv_stem(patch: int, hidden: int) -> ConvStem:
    """Hybrid-ViT stem (Dosovitskiy et al. 2021, sec. 3.1): log2(patch) stride-2 3x3 convs with GELU map
    (B, 3, S, S) to (B, hidden, S / patch, S / patch), the shape of the linear patch embedding it replaces.
    Convolutions bring the locality bias a from-scratch encoder needs when demos are few."""
    layers: list[nn.Module] = []
    ch = 3
    n = patch.bit_length() - 1
    for i in range(n):
        out = hidden if i == n - 1 else max(16, hidden // 2 ** (n - 1 - i))
        layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1)] + ([nn.GELU()] if i < n - 1 else [])
        ch = out
    return ConvStem(*layers)


class SpatialSoftmax(nn.Module):
    """Keypoints from pixels (Levine et al. 2016, "deep spatial autoencoders"): two 3x3 convs (the second
    stride 2) and a 1x1 conv give K feature maps at half resolution; a softmax over each map's positions (with
    a learned temperature per map) gives the expected image coordinates of that feature, in [-1, 1].

    A from-scratch ViT has to learn where things are from its position embeddings; this branch reads positions
    out directly, the bias few-demo behaviour cloning needs to place a target it has not seen at that spot.
    """

    def __init__(self, keypoints: int, channels: int = 32) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(3, channels // 2, 3, padding=1), nn.GELU(),
                                   nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1), nn.GELU(),
                                   nn.Conv2d(channels, keypoints, 1))
        self.log_temp = nn.Parameter(torch.zeros(keypoints))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels (N, 3, S, S) -> expected (x, y) of each keypoint (N, K, 2) in [-1, 1]."""
        maps = self.convs(pixels)  # (N, K, S/2, S/2)
        n, k, hgt, wid = maps.shape
        attn = F.softmax(maps.flatten(2).float() / self.log_temp.exp()[:, None], -1).to(maps.dtype)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, hgt, device=maps.device, dtype=maps.dtype),
                                torch.linspace(-1, 1, wid, device=maps.device, dtype=maps.dtype), indexing="ij")
        return torch.stack([(attn * xs.flatten()).sum(-1), (attn * ys.flatten()).sum(-1)], -1)


def _lm(cfg: VLAConfig, vocab_size: int) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    m = cfg.lm
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab_size, hidden_size=m.hidden_size, num_hidden_layers=m.num_layers,
        num_attention_heads=m.num_heads, num_key_value_heads=m.num_kv_heads or m.num_heads,
        intermediate_size=m.intermediate_size, max_position_embeddings=m.max_position_embeddings,
        rms_norm_eps=m.rms_norm_eps, tie_word_embeddings=False))


class VLAPolicy(Policy):
    """Vision encoder + projector + causal LM emitting action-token chunks.

    Args:
        config: the architecture.
        vocab_size: the LM vocabulary (tokenizer size); action ids are ``[vocab_size - n_bins, vocab_size)``.
        action_stats: q01/q99 of the raw actions (D,), for the action tokenizer.
        state_stats: q01/q99 of the proprio state, mapped to [-1, 1].
    """

    def __init__(self, config: VLAConfig, vocab_size: int, action_stats: NormStats,
                 state_stats: NormStats | None = None, tokenizer=None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.vocab_size = config.lm.vocab_size or vocab_size
        self.action_offset = self.vocab_size - config.n_bins
        self.action_tokenizer = ActionTokenizer(action_stats, self.action_offset, config.n_bins, config.binary_dims)
        self.state_stats = state_stats
        h = config.lm.hidden_size
        self.vision = _vision_model(config)
        merged = config.vision.hidden_size * config.vision.merge ** 2
        self.projector = nn.Sequential(nn.Linear(merged, h), nn.GELU(), nn.Linear(h, h))
        self.camera_embed = nn.Parameter(torch.zeros(len(config.cameras), h))
        kp = config.vision.keypoints
        self.keypoints = SpatialSoftmax(kp) if kp else None
        self.keypoint_proj = (nn.Sequential(nn.Linear(2 * kp, h), nn.GELU(), nn.Linear(h, h)) if kp else None)
        self.lm = _lm(config, self.vocab_size)
        self.proprio = nn.Linear(config.state_dim, h) if config.use_proprio else None
        self.action_slots = nn.Parameter(torch.randn(config.num_action_tokens, h) * 0.02)

    # ---- sequence assembly ------------------------------------------------------------------
    def _prefix(self, batch: VLABatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (B, P, h) and mask (B, P) of images + instruction + proprio."""
        b, c = batch.pixels.shape[:2]
        flat = batch.pixels.flatten(0, 1)  # (B*C, 3, S, S)
        feats = merge_patches(self.vision(pixel_values=flat).last_hidden_state, self.config.vision.merge)
        img = self.projector(feats)  # (B*C, patches / merge^2, h)
        if self.keypoints is not None:  # one more token per camera: its keypoints' coordinates
            kp = self.keypoint_proj(self.keypoints(flat).flatten(1))  # (B*C, h)
            img = torch.cat([img, kp[:, None]], 1)
        img = img.unflatten(0, (b, c)) + self.camera_embed[None, :, None, :]
        img = img.flatten(1, 2)  # (B, C * tokens per camera, h): its patches (+ its keypoint token)
        txt = self.lm.get_input_embeddings()(batch.input_ids)
        parts, masks = [img, txt], [torch.ones(img.shape[:2], dtype=torch.long, device=img.device),
                                    batch.attention_mask]
        if self.proprio is not None:
            if batch.state is None:
                raise ValueError("this policy uses proprio (config.use_proprio) but the batch has no state")
            parts.append(self.proprio(batch.state)[:, None])
            masks.append(torch.ones(b, 1, dtype=torch.long, device=img.device))
        return torch.cat(parts, 1), torch.cat(masks, 1)

    def _action_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., h) -> logits over the action ids only (..., n_bins)."""
        w = self.lm.get_output_embeddings().weight[self.action_offset :]
        return hidden @ w.T

    def action_logits(self, batch: VLABatch, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, K, n_bins) of the K action tokens. ``tokens`` (B, K) in [0, n_bins) is needed
        (teacher forcing) for autoregressive decoding and ignored for parallel decoding."""
        emb, mask = self._prefix(batch)
        k = self.config.num_action_tokens
        if self.config.decoding == "parallel":
            act = self.action_slots[None].expand(len(batch), -1, -1)
            hidden = self._run_lm(torch.cat([emb, act], 1), mask, k)
            return self._action_head(hidden)
        if tokens is None:
            raise ValueError("autoregressive scoring needs the action tokens (teacher forcing)")
        act = self.lm.get_input_embeddings()(tokens[:, :-1] + self.action_offset)
        hidden = self._run_lm(torch.cat([emb, act], 1), mask, k)  # last prefix position predicts token 0
        return self._action_head(hidden)

    def _run_lm(self, emb: torch.Tensor, prefix_mask: torch.Tensor, last: int) -> torch.Tensor:
        mask = torch.cat([prefix_mask, prefix_mask.new_ones(emb.shape[0], emb.shape[1] - prefix_mask.shape[1])], 1)
        out = self.lm.model(inputs_embeds=emb, attention_mask=mask)
        return out.last_hidden_state[:, -last:]

    # ---- acting and scoring -----------------------------------------------------------------
    def logprobs(self, batch: VLABatch, tokens: torch.Tensor, temperature: float = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropies (B, K) of ``tokens`` (B, K) under the tempered action distribution, on the policy's
        device (the inputs are moved there)."""
        batch, tokens = batch.to(self.device), tokens.to(self.device)
        logits = self.action_logits(batch, tokens).float() / temperature
        logp = F.log_softmax(logits, -1)
        entropy = -(logp.exp() * logp).sum(-1)
        return logp.gather(-1, tokens[..., None]).squeeze(-1), entropy

    @torch.no_grad()
    def act(self, batch: VLABatch, temperature: float = 1.0, greedy: bool = False,
            generator: torch.Generator | None = None, quantiles: torch.Tensor | None = None,
            point_decoding: str | None = None) -> ActOutput:
        """Decode one action chunk per row: sampled with ``temperature`` or greedy. Greedy takes each token's
        ``point_decoding`` (None: ``config.point_decoding``): ``argmax`` (its most likely bin) or ``median``
        (the first bin whose cumulative probability reaches 0.5 over the ordered bins).

        ``quantiles`` float (B, K) in (0, 1): token k is the ``quantiles[:, k]`` quantile of its tempered
        distribution over the ordered bins (inverse-CDF sampling) instead of a fresh draw; each token is still
        distributed as the policy says when the quantile is uniform, but a caller can correlate the quantiles
        over time (`vla_rl.rollout.robot.QuantileNoise`).

        ``batch`` may be on any device (it is moved to the policy's); the outputs are on the CPU."""
        point = point_decoding or self.config.point_decoding
        batch = batch.to(self.device)
        if point not in POINT_DECODINGS:
            raise ValueError(f"unknown point_decoding {point!r}; valid: {', '.join(POINT_DECODINGS)}")
        if self.config.decoding == "parallel":
            logits = self.action_logits(batch).float()
            tokens, logp, ent = _sample(logits, temperature, greedy, generator, quantiles, point)
        else:
            if quantiles is not None:
                raise ValueError("quantile sampling is implemented for parallel decoding only")
            tokens, logp, ent = self._generate_autoregressive(batch, temperature, greedy, generator, point)
        tokens, logp, ent = tokens.cpu(), logp.cpu(), ent.cpu()
        ids = (tokens + self.action_offset).numpy().reshape(len(batch), self.config.chunk_size, -1)
        return ActOutput(tokens, logp, ent, self.action_tokenizer.decode(ids)[:, : self.config.n_action_steps])

    def _generate_autoregressive(self, batch: VLABatch, temperature: float, greedy: bool,
                                 generator: torch.Generator | None, point: str = "argmax"):
        from transformers import DynamicCache

        emb, mask = self._prefix(batch)
        cache = DynamicCache()
        out = self.lm.model(inputs_embeds=emb, attention_mask=mask, cache=cache, use_cache=True)
        hidden = out.last_hidden_state[:, -1:]
        toks, logps, ents = [], [], []
        for _ in range(self.config.num_action_tokens):
            t, lp, en = _sample(self._action_head(hidden).float(), temperature, greedy, generator, point=point)
            toks.append(t)
            logps.append(lp)
            ents.append(en)
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], 1)
            nxt = self.lm.get_input_embeddings()(t + self.action_offset)
            out = self.lm.model(inputs_embeds=nxt, attention_mask=mask, cache=cache, use_cache=True)
            hidden = out.last_hidden_state
        return torch.cat(toks, 1), torch.cat(logps, 1), torch.cat(ents, 1)

    def set_n_action_steps(self, n: int | None) -> None:
        """Execute the first ``n`` steps of each decoded chunk (None: all of it); checked against chunk_size.
        Not part of the architecture: any checkpoint can act with any horizon up to its chunk."""
        self.config = type(self.config).model_validate({**self.config.model_dump(), "n_action_steps": n})

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def processor(self) -> VLAProcessor:
        """The matching observation processor (needs the tokenizer)."""
        if self.tokenizer is None:
            raise ValueError("this policy was built without a tokenizer; pass tokenizer= or load a checkpoint")
        c = self.config
        return VLAProcessor(self.tokenizer, c.cameras, c.vision.image_size, c.max_instruction_tokens,
                            self.state_stats if c.use_proprio else None)

    # ---- checkpoints ------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and the tokenizer to ``path``, atomically."""
        from safetensors.torch import save_file

        meta = {"format": CHECKPOINT_FORMAT, "vla": self.config.model_dump(mode="json"),
                "vocab_size": self.vocab_size, "action_stats": self.action_tokenizer.stats.to_dict(),
                "state_stats": self.state_stats.to_dict() if self.state_stats is not None else None,
                "extra": extra or {}}
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}

        def write(tmp: Path) -> None:
            (tmp / "config.json").write_text(json.dumps(meta, indent=2))
            save_file(state, str(tmp / "model.safetensors"))
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(str(tmp))

        return atomic_dir(path, write)

    @classmethod
    def from_pretrained(cls, path: str | Path, expect: VLAConfig | None = None,
                        map_location: str = "cpu") -> VLAPolicy:
        """Load a checkpoint folder. ``expect``: refuse a checkpoint whose architecture differs,
        naming each differing key."""
        from transformers import PreTrainedTokenizerFast

        from vla_rl.policies.checkpoint import load_weights, state_mismatches

        path = Path(path)
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{path} is not a VLA checkpoint: {cfg_file.name} is missing")
        meta = json.loads(cfg_file.read_text())
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{cfg_file}: checkpoint format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
        config = VLAConfig.model_validate(meta["vla"])
        if expect is not None:
            diff = _config_diff(expect.model_dump(mode="json"), config.model_dump(mode="json"))
            if diff:
                raise ValueError(f"checkpoint {path} was trained with another config: " + "; ".join(diff))
        tok = None
        if (path / "tokenizer.json").is_file():
            tok = PreTrainedTokenizerFast.from_pretrained(str(path))
        st = meta.get("state_stats")
        policy = cls(config, meta["vocab_size"], NormStats.from_dict(meta["action_stats"]),
                     NormStats.from_dict(st) if st else None, tokenizer=tok)
        weights = load_weights(path / "model.safetensors", device=map_location)
        problems = state_mismatches(policy.state_dict(), weights)
        if problems:
            raise ValueError(f"checkpoint {path} does not match its config: " + "; ".join(problems))
        policy.load_state_dict(weights)
        return policy


CHECKPOINT_FORMAT = "vla-rl/vla-v1"


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _config_diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: expected {va!r}, checkpoint has {vb!r}")
    return out


POINT_DECODINGS = get_args(PointDecoding)


def _sample(logits: torch.Tensor, temperature: float, greedy: bool, generator: torch.Generator | None,
            quantiles: torch.Tensor | None = None, point: str = "argmax"):
    """logits (B, K, n) -> tokens (B, K), their log-probs and entropies under logits / temperature.
    ``quantiles`` (B, K) in (0, 1): inverse-CDF sampling (the first bin whose cumulative probability reaches it).
    ``greedy`` with ``point`` ``argmax``: the most likely bin; ``median``: the 0.5 quantile."""
    logp = F.log_softmax(logits / temperature, -1)
    if greedy and point == "median":
        quantiles, greedy = torch.full(logp.shape[:-1], 0.5, device=logp.device), False
    if greedy:
        tokens = logp.argmax(-1)
    elif quantiles is not None:
        cdf = logp.exp().cumsum(-1)
        tokens = torch.searchsorted(cdf, quantiles[..., None].to(cdf)).squeeze(-1).clamp(max=cdf.shape[-1] - 1)
    else:
        flat = logp.exp().flatten(0, -2)
        tokens = multinomial(flat, generator).view(logp.shape[:-1])
    entropy = -(logp.exp() * logp).sum(-1)
    return tokens, logp.gather(-1, tokens[..., None]).squeeze(-1), entropy
