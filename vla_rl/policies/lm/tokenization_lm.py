"""A text tokenizer built locally (no downloads) for the LM policy.

Byte-level BPE like `vla_rl.policies.tokenizer.build_tokenizer`, but with every digit its own
pre-token (``Digits(individual_digits=True)``, as Llama and Qwen do), so numbers are spelled digit by
digit and arithmetic stays learnable; no action ids; ``<s>`` is prepended to every encoded prompt.
`task_corpus` draws the training text from the procedural text tasks (prompts + reference solutions) of
train-split seeds only (`corpus_seeds`): no validation or test problem shapes the vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from vla_rl.splits import SPLITS, split_seeds
from vla_rl.text_tasks import make_text_task, prompt_text


def build_text_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A `PreTrainedTokenizerFast` trained on ``texts`` with at most ``vocab_size`` ids.

    Encoding with ``add_special_tokens=True`` prepends ``<s>``; decoding is lossless for any text
    (byte fallback).
    """
    from tokenizers import pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from vla_rl.policies.tokenizer import SPECIAL, train_byte_bpe

    core = train_byte_bpe(
        texts,
        vocab_size,
        pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        ),
    )
    bos = SPECIAL["bos_token"]
    core.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, core.token_to_id(bos))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=core, **SPECIAL)


def corpus_seeds(n: int) -> list[int]:
    """The seeds of the tokenizer corpus's problems: the last ``n`` of the train split, far from the train seeds
    that GRPO and the text SFT draw (from 0 upward), and never a validation or test seed."""
    return split_seeds("train", n, len(SPLITS["train"]) - n)


def task_corpus(
    tasks: Sequence[str] = ("arithmetic",),
    n: int = 500,
    difficulties: Sequence[int] = (1, 2, 3),
) -> list[str]:
    """Prompts and reference solutions of ``n`` problems per task and difficulty, from `corpus_seeds`."""
    out = []
    for name in tasks:
        task = make_text_task(name)
        for d in difficulties:
            for s in corpus_seeds(n):
                p = task.generate(s, min(d, task.max_difficulty))
                out += [prompt_text(task, p), p.solution]
    return out
