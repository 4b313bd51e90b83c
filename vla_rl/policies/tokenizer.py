"""Locally built Hugging Face tokenizers (no downloads), with reserved action ids at the end.

`build_tokenizer` trains a small byte-level BPE on the given texts with the `tokenizers` library and
wraps it in `PreTrainedTokenizerFast`; ``n_action_tokens`` ids ``<act_0> .. <act_{n-1}>`` are appended
as the LAST ids of the vocabulary (OpenVLA maps its 256 action bins onto the last 256 ids).
"""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def train_byte_bpe(texts: Iterable[str], vocab_size: int, pre_tokenizer=None):
    """A `tokenizers.Tokenizer`: byte-level BPE with the `SPECIAL` tokens, trained on ``texts`` to at most
    ``vocab_size`` ids. ``pre_tokenizer`` (default: plain byte-level) splits text before the merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE(unk_token=SPECIAL["unk_token"]))
    core.pre_tokenizer = pre_tokenizer or pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(list(texts), trainer=trainer)
    return core


def build_tokenizer(texts: Iterable[str], vocab_size: int = 512, n_action_tokens: int = 256):
    """A `PreTrainedTokenizerFast` trained on ``texts``; returns it with ``action_token_offset`` set.

    The base vocabulary (BPE merges + bytes + specials) has at most ``vocab_size`` ids; the action ids
    follow, so ``len(tok) == tok.action_token_offset + n_action_tokens``.
    """
    from transformers import PreTrainedTokenizerFast

    core = train_byte_bpe(texts, vocab_size)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL)
    base = len(tok)
    tok.add_tokens([f"<act_{i}>" for i in range(n_action_tokens)], special_tokens=True)
    first = tok.convert_tokens_to_ids("<act_0>")
    if first != base or len(tok) != base + n_action_tokens:
        raise RuntimeError("action tokens did not land at the end of the vocabulary")
    tok.init_kwargs["action_token_offset"] = base
    return tok


def action_token_offset(tok) -> int:
    """Vocab id of ``<act_0>`` (works after save/load)."""
    return int(tok.convert_tokens_to_ids("<act_0>"))
