"""The text language-model policy: batched sampling with the KV cache, and teacher-forced re-scoring.

Layout shared by generation, scoring and SFT (one row per sample)::

    [left padding] [prompt tokens (<s> first)] [completion tokens ... stop token] [right padding]

Position ids count real tokens only (``cumsum(mask) - 1``), so a row means the same thing whatever
its padding. The completion's log-probs are taken under ``logits / temperature`` both when sampling and
when re-scoring, so the sampled log-probs equal the re-computed ones and PPO's ratio starts at 1 (the
same convention as `VLAPolicy`). `LMPolicy.logprobs(batch, tokens, temperature)` has `VLAPolicy`'s call
shape, so the GRPO update loop can score either policy.

Shared prompts: the G completions of a GRPO group repeat one prompt. Generation (its prefill) and scoring run each
distinct prompt of a batch once, copy its KV cache to the rows (`prompt_groups`, `LMPolicy.completion_logits`),
then run only the completions per row; the backward goes through the shared prompt pass once, and values and
gradients equal the per-row pass (``LMPolicy.share_prompts = False``, also taken when all prompts differ).

Backends: ``torch`` (this process; CPU or one GPU) and ``vllm`` (`VLLMGenerator`, GPU servers; needs the
``vllm`` extra, checked through `vla_rl.availability`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vla_rl.policies.base import Policy, multinomial
from vla_rl.policies.lm.configuration_lm import LMPolicyConfig, lm_preset
from vla_rl.utils.io import atomic_dir

CHECKPOINT_FORMAT = "vla-rl/lm-v1"
POLICY_FILE = "lm_policy.json"  # our metadata beside the Hugging Face files; absent in a foreign model folder
Backend = Literal["torch", "vllm"]


@dataclass
class TextBatch:
    """Left-padded prompts: input_ids int64 (B, P), attention_mask int64 (B, P) (0 on the padding;
    the ids there are arbitrary)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> TextBatch:
        return TextBatch(self.input_ids.to(device), self.attention_mask.to(device))

    def index(self, idx: torch.Tensor | slice) -> TextBatch:
        return TextBatch(self.input_ids[idx], self.attention_mask[idx])

    def rows(self) -> list[list[int]]:
        """The unpadded token ids of each row."""
        return [ids[m.bool()].tolist() for ids, m in zip(self.input_ids, self.attention_mask, strict=True)]

    @staticmethod
    def left_pad(seqs: Sequence[Sequence[int] | torch.Tensor], pad_id: int = 0, width: int | None = None) -> TextBatch:
        """Rows of ids (each non-empty) -> a left-padded batch of width ``max(len)`` (or ``width``)."""
        width = max([len(s) for s in seqs] + [width or 0])
        ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if len(s):
                ids[i, width - len(s) :] = torch.as_tensor(s, dtype=torch.long)
                mask[i, width - len(s) :] = 1
        return TextBatch(ids, mask)


def right_pad(
    seqs: Sequence[Sequence[float] | torch.Tensor],
    pad: float = 0,
    width: int | None = None,
    dtype: torch.dtype = torch.long,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows -> (values (B, T) right-padded with ``pad``, mask float32 (B, T)); T = max(len) (or ``width``)."""
    width = max([len(s) for s in seqs] + [width or 0])
    out = torch.full((len(seqs), width), pad, dtype=dtype)
    mask = torch.zeros((len(seqs), width), dtype=torch.float32)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.as_tensor(s, dtype=dtype)
        mask[i, : len(s)] = 1.0
    return out, mask


@dataclass
class Generation:
    """Sampled completions. tokens int64 (B, T) (pad id after the end); logprobs, entropy float32 (B, T)
    under the tempered distribution (0 after the end); mask float32 (B, T) (1 for generated tokens, the
    stop token included); finished bool (B,) (True: stopped at a stop token, False: hit the length limit);
    texts: the decoded completions (special tokens dropped)."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    entropy: torch.Tensor
    mask: torch.Tensor
    finished: torch.Tensor
    texts: list[str]

    @property
    def lengths(self) -> torch.Tensor:
        """Generated tokens per row, int64 (B,)."""
        return self.mask.sum(1).long()


def sample_tokens(
    logits: torch.Tensor, temperature: float, greedy: bool = False, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits (B, V) -> tokens int64 (B,), their log-probs and the entropies (B,) under logits / temperature
    (greedy: argmax, still scored under the tempered distribution)."""
    logp = F.log_softmax(logits.float() / temperature, -1)
    probs = logp.exp()
    tokens = logp.argmax(-1) if greedy else multinomial(probs, generator).squeeze(-1)
    entropy = -(probs * logp).sum(-1)
    return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1), entropy


def prompt_groups(batch: TextBatch) -> tuple[TextBatch, torch.Tensor] | None:
    """The distinct prompts of ``batch`` (B, P), for running each once: (prompts (U, P'), rows int64 (B,)), row b
    reading ``prompts[rows[b]]``; None when all B rows differ. Two rows are the same prompt when their masks and
    their unpadded ids are equal. Leading columns that are padding in every row are dropped (P' <= P), so the
    prompts stay left-padded and ``prompts.attention_mask[rows]`` is the batch's mask without those columns."""
    b = len(batch)
    if b < 2:
        return None
    mask = batch.attention_mask
    _, rows = torch.unique(torch.cat([batch.input_ids * mask, mask], 1), dim=0, return_inverse=True)
    u = int(rows.max()) + 1
    if u == b:
        return None
    first = torch.full((u,), b, dtype=torch.long, device=rows.device)
    first = first.scatter_reduce(0, rows, torch.arange(b, device=rows.device), "amin")  # a row of each prompt
    start = int(mask.any(0).long().argmax())  # the first column holding a real token
    return TextBatch(batch.input_ids[first, start:], mask[first, start:]), rows


def build_causal_lm(
    cfg: LMPolicyConfig, vocab_size: int, bos_id: int | None, eos_id: int | None, pad_id: int | None
) -> nn.Module:
    """A randomly initialised transformers `LlamaForCausalLM` / `Qwen2ForCausalLM` from ``cfg``."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    hf_config, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[
        cfg.type
    ]
    config = hf_config(
        vocab_size=cfg.vocab_size or vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads or cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        rms_norm_eps=cfg.rms_norm_eps,
        rope_theta=cfg.rope_theta,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    config._attn_implementation = "sdpa"
    return model_cls(config)


def _quiet_transformers() -> None:
    """No per-shard progress bars: a training run saves checkpoints often and logs its own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


class LMPolicy(Policy):
    """A causal LM with its tokenizer, acting on text prompts.

    Args:
        model: a transformers causal LM (``model(input_ids, attention_mask, position_ids, cache, ...)``).
        tokenizer: its tokenizer (a pad id is taken from eos when it has none).
        config: the architecture it was built from (None for a model loaded from a foreign folder).
        backend: ``torch`` or ``vllm`` (raises `DependencyNotInstalled` with the install line if missing).
        chat_template: wrap prompts in the tokenizer's chat template (None: when it has one).

    Attribute ``share_prompts`` (True): run each distinct prompt of a batch once (see the module docstring).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        config: LMPolicyConfig | None = None,
        backend: Backend = "torch",
        chat_template: bool | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        eos = tokenizer.eos_token_id
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos or 0)
        stops = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        stops = [stops] if isinstance(stops, int) else list(stops or [])
        self.stop_ids = sorted({int(s) for s in [*stops, eos] if s is not None})
        if not self.stop_ids:
            raise ValueError("the tokenizer has no eos token and the model no generation_config.eos_token_id")
        self.use_chat_template = (
            bool(getattr(tokenizer, "chat_template", None)) if chat_template is None else chat_template
        )
        if backend not in ("torch", "vllm"):
            raise ValueError(f"unknown backend {backend!r}; valid: torch, vllm")
        self.backend = backend
        self._vllm = VLLMGenerator() if backend == "vllm" else None
        self.share_prompts = True  # run each distinct prompt of a batch once (`prompt_groups`)

    # ---- construction -----------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: LMPolicyConfig | str,
        tokenizer: Any = None,
        tasks: Sequence[str] = ("arithmetic",),
        seed: int = 0,
        backend: Backend = "torch",
    ) -> LMPolicy:
        """A new model from ``config`` (or a preset name). Without ``tokenizer`` one is trained on the
        prompts and solutions of ``tasks`` (`build_text_tokenizer`). ``seed`` fixes the initial weights."""
        from vla_rl.policies.lm.tokenization_lm import build_text_tokenizer, task_corpus

        cfg = lm_preset(config) if isinstance(config, str) else config
        if tokenizer is None:
            tokenizer = build_text_tokenizer(task_corpus(tasks), cfg.tokenizer_vocab_size)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_causal_lm(
                cfg, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
            )
        return cls(model, tokenizer, cfg, backend=backend)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, backend: Backend = "torch", dtype: torch.dtype = torch.float32
    ) -> LMPolicy:
        """Load a folder written by `save_pretrained`, or ANY Hugging Face causal LM folder
        (``AutoModelForCausalLM`` + ``AutoTokenizer``), in ``dtype``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a model folder: config.json is missing")
        meta: dict[str, Any] = {}
        if (path / POLICY_FILE).is_file():
            meta = json.loads((path / POLICY_FILE).read_text())
            if meta.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"{path / POLICY_FILE}: format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
        _quiet_transformers()
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
        tok = AutoTokenizer.from_pretrained(str(path))
        config = LMPolicyConfig.model_validate(meta["lm"]) if meta.get("lm") else None
        return cls(model, tok, config, backend=backend, chat_template=meta.get("chat_template"))

    def save_pretrained(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write the Hugging Face model and tokenizer files plus ``lm_policy.json`` to ``path``, atomically
        (a temporary sibling folder renamed into place). The folder also loads with plain transformers."""
        meta = {
            "format": CHECKPOINT_FORMAT,
            "lm": None if self.config is None else self.config.model_dump(mode="json"),
            "chat_template": self.use_chat_template,
            "extra": extra or {},
        }

        def write(tmp: Path) -> None:
            _quiet_transformers()
            self.model.save_pretrained(str(tmp))
            self.tokenizer.save_pretrained(str(tmp))
            (tmp / POLICY_FILE).write_text(json.dumps(meta, indent=2))

        return atomic_dir(path, write)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- text <-> ids -------------------------------------------------------------------------
    def prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        """Token ids of each prompt as the model reads it (chat template or ``<s>`` + text)."""
        tok = self.tokenizer
        if self.use_chat_template:
            texts = [
                tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                for p in prompts
            ]
            return [list(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
        return [list(ids) for ids in tok(list(prompts), add_special_tokens=True)["input_ids"]]

    def completion_ids(self, completions: Sequence[str], add_eos: bool = True) -> list[list[int]]:
        """Token ids of each completion (no BOS), ending with the stop token when ``add_eos``."""
        ids = self.tokenizer(list(completions), add_special_tokens=False)["input_ids"]
        end = [self.stop_ids[0]] if add_eos else []
        return [list(r) + end for r in ids]

    def encode(self, prompts: Sequence[str]) -> TextBatch:
        """Prompts -> a left-padded `TextBatch`."""
        return TextBatch.left_pad(self.prompt_ids(prompts), self.pad_id)

    def decode(self, tokens: torch.Tensor, mask: torch.Tensor) -> list[str]:
        """Completion ids (B, T) with mask (B, T) -> texts (special tokens dropped)."""
        rows = [t[m.bool()].tolist() for t, m in zip(tokens, mask, strict=True)]
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

    # ---- scoring ------------------------------------------------------------------------------
    def completion_logits(self, batch: TextBatch, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) predicting each completion token (B, T), teacher-forced.

        Rows that share a prompt (a GRPO group) share its forward pass (`prompt_groups`): each distinct prompt
        is run once, its KV cache indexed out to its rows, and only the completions run per row. Gradients
        flow through the shared prompt pass (the backward of the indexing sums the rows' cache gradients), so
        values and gradients equal the one-pass path's (`full_completion_logits`, used when every prompt is
        distinct or ``share_prompts`` is off)."""
        groups = prompt_groups(batch) if self.share_prompts and tokens.shape[1] > 0 else None
        if groups is None:
            return self.full_completion_logits(batch, tokens)
        return self._shared_completion_logits(*groups, tokens)

    def full_completion_logits(self, batch: TextBatch, tokens: torch.Tensor) -> torch.Tensor:
        """`completion_logits` in one forward pass over [prompt, completion] per row (no prompt sharing)."""
        ids = torch.cat([batch.input_ids, tokens], 1)
        mask = torch.cat([batch.attention_mask, torch.ones_like(tokens)], 1)  # causal: right padding is harmless
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False, logits_to_keep=tokens.shape[1] + 1
        )
        return out.logits[:, :-1]  # the last prompt position predicts token 0

    def _prefill(self, prompts: TextBatch, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        """Run ``prompts`` (U, P) once -> (last-position logits (B, V), their `DynamicCache` of B rows), row b
        reading prompt ``rows[b]`` (None: B = U, row b reads prompt b)."""
        from transformers import DynamicCache

        cache = DynamicCache()
        mask = prompts.attention_mask
        out = self.model(
            input_ids=prompts.input_ids,
            attention_mask=mask,
            position_ids=(mask.cumsum(1) - 1).clamp(min=0),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        if rows is None:
            return out.logits[:, -1], cache
        cache.batch_select_indices(rows)  # (U, H, P, D) -> (B, H, P, D) per layer; differentiable indexing
        return out.logits[rows, -1], cache

    def _shared_completion_logits(self, prompts: TextBatch, rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """`completion_logits` with the distinct ``prompts`` (U, P) run once; row b has prompt ``rows[b]``."""
        first, cache = self._prefill(prompts, rows)  # the last prompt position predicts token 0
        if tokens.shape[1] == 1:
            return first[:, None]
        inputs = tokens[:, :-1]  # the last token predicts nothing we score
        mask = prompts.attention_mask[rows]
        pos = mask.sum(1, keepdim=True) + torch.arange(inputs.shape[1], device=mask.device)
        out = self.model(
            input_ids=inputs,
            attention_mask=torch.cat([mask, torch.ones_like(inputs)], 1),
            position_ids=pos,
            cache=cache,
            use_cache=True,
        )
        return torch.cat([first[:, None], out.logits], 1)

    def logprobs(
        self, batch: TextBatch, tokens: torch.Tensor, temperature: float = 1.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs and entropies (B, T) of completion ``tokens`` (B, T) under logits / temperature, on the policy's
        device (the inputs are moved there)."""
        batch, tokens = batch.to(self.device), tokens.to(self.device)
        logp = F.log_softmax(self.completion_logits(batch, tokens).float() / temperature, -1)
        entropy = -(logp.exp() * logp).sum(-1)
        return logp.gather(-1, tokens[..., None]).squeeze(-1), entropy

    # ---- generation ---------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str] | TextBatch,
        max_new_tokens: int | torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        greedy: bool = False,
    ) -> Generation:
        """Sample a completion per prompt, all rows in one batch with the KV cache.

        ``prompts``: texts, or an encoded `TextBatch` (B, P) (e.g. a prompt plus a paused completion). Rows
        with the same prompt (a GRPO group) share one prefill (`prompt_groups`), its KV cache copied to each row.
        ``max_new_tokens``: an int or a per-row int64 (B,) budget. A row stops after a stop token (kept,
        mask 1) or at its budget; a finished row stays finished (pad id, log-prob 0, mask 0).
        The prompts may be on any device (they are moved to the policy's); the outputs are on the CPU.
        """
        batch = prompts if isinstance(prompts, TextBatch) else self.encode(prompts)
        batch = batch.to(self.device)
        if self._vllm is not None:
            return self._vllm.generate(self, batch, max_new_tokens, temperature, generator, greedy)
        device = batch.input_ids.device
        b = len(batch)
        limits = torch.as_tensor(max_new_tokens, dtype=torch.long).to(device).expand(b)
        steps = int(limits.max()) if b else 0
        stop = torch.tensor(self.stop_ids, device=device)
        tokens = torch.full((b, steps), self.pad_id, dtype=torch.long, device=device)
        logps = torch.zeros((b, steps), device=device)
        ents = torch.zeros((b, steps), device=device)
        tmask = torch.zeros((b, steps), device=device)
        done = limits <= 0
        finished = torch.zeros(b, dtype=torch.bool, device=device)
        distinct, rows = (prompt_groups(batch) if self.share_prompts else None) or (batch, None)
        mask = distinct.attention_mask if rows is None else distinct.attention_mask[rows]
        logits, cache = self._prefill(distinct, rows) if steps > 0 else (None, None)
        next_pos = mask.sum(1, keepdim=True)
        t = -1
        for t in range(steps):
            tok, lp, en = sample_tokens(logits, temperature, greedy, generator)
            live = ~done
            tokens[:, t] = torch.where(live, tok, self.pad_id)
            logps[:, t] = torch.where(live, lp, 0.0)
            ents[:, t] = torch.where(live, en, 0.0)
            tmask[:, t] = live.float()
            hit = live & torch.isin(tok, stop)
            finished |= hit
            done = done | hit | (t + 1 >= limits)
            if bool(done.all()):
                break
            mask = torch.cat([mask, mask.new_ones(b, 1)], 1)
            out = self.model(
                input_ids=tokens[:, t : t + 1], attention_mask=mask, position_ids=next_pos, cache=cache, use_cache=True
            )
            logits = out.logits[:, -1]
            next_pos = next_pos + 1
        n = t + 1
        tokens, logps, ents, tmask = (x[:, :n].cpu() for x in (tokens, logps, ents, tmask))
        finished = finished.cpu()
        return Generation(tokens, logps, ents, tmask, finished, self.decode(tokens, tmask))

    def sync_backend(self) -> None:
        """Push the current weights to the generation backend (vLLM; a no-op for torch). Call after updates."""
        if self._vllm is not None:
            self._vllm.sync(self)


class VLLMGenerator:
    """Generation through vLLM (GPU servers; the ``vllm`` extra). NOT exercised by the CPU test suite.

    The policy is saved to a temporary folder and served by ``vllm.LLM`` (rebuilt by `sync`, the
    simplest weight sync that works across vLLM versions). Each row gets its own `SamplingParams`
    (its budget, a seed drawn from the torch generator), ``logprobs=0`` returns the sampled token's
    log-prob, and ``logprobs_mode="processed_logprobs"`` makes it the log-prob after temperature (our
    convention). vLLM does not return full-distribution entropies; ``entropy`` is ``-logprob``, the
    one-sample estimate of the entropy.
    """

    def __init__(self, **engine_kwargs: Any) -> None:
        from vla_rl.availability import require

        self.vllm = require("vllm")
        self.engine_kwargs = {"logprobs_mode": "processed_logprobs", "dtype": "float32"} | engine_kwargs
        self._llm: Any = None
        self._dir: str | None = None

    def sync(self, policy: LMPolicy) -> None:
        """Serve ``policy``'s current weights."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = tempfile.mkdtemp(prefix="vla_rl_vllm_")
        policy.save_pretrained(Path(self._dir) / "policy")
        self._llm = None
        self._llm = self.vllm.LLM(model=str(Path(self._dir) / "policy"), **self.engine_kwargs)

    def generate(
        self,
        policy: LMPolicy,
        batch: TextBatch,
        max_new_tokens: int | torch.Tensor,
        temperature: float,
        generator: torch.Generator | None,
        greedy: bool,
    ) -> Generation:
        if self._llm is None:
            self.sync(policy)
        b = len(batch)
        limits = torch.as_tensor(max_new_tokens, dtype=torch.long).expand(b).tolist()
        seeds = torch.randint(0, 2**31 - 1, (b,), generator=generator).tolist()
        params = [
            self.vllm.SamplingParams(
                temperature=0.0 if greedy else temperature,
                max_tokens=int(n),
                logprobs=0,
                seed=s,
                stop_token_ids=policy.stop_ids,
                skip_special_tokens=True,
            )
            for n, s in zip(limits, seeds, strict=True)
        ]
        prompts = [{"prompt_token_ids": row} for row in batch.rows()]
        outs = self._llm.generate(prompts, params, use_tqdm=False)
        ids, lps, finished = [], [], []
        for o in outs:
            c = o.outputs[0]
            ids.append(list(c.token_ids))
            lps.append([c.logprobs[i][tid].logprob for i, tid in enumerate(c.token_ids)])
            finished.append(bool(c.token_ids) and c.token_ids[-1] in policy.stop_ids)
        tokens, mask = right_pad(ids, policy.pad_id)
        logp, _ = right_pad(lps, 0.0, dtype=torch.float32)
        return Generation(
            tokens, logp, -logp * mask, mask, torch.tensor(finished, dtype=torch.bool), policy.decode(tokens, mask)
        )
