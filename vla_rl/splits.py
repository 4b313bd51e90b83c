"""Initial-state seed ranges for every task, robot or text, disjoint by construction: train (RL, demos, tokenizer
corpora), val (model selection), test (reported figures). Every consumer asks for seeds here, so evaluation states
can never leak into training (SimpleVLA-RL #34)."""

from __future__ import annotations

SPLITS: dict[str, range] = {
    "train": range(0, 1_000_000),
    "val": range(1_000_000, 1_100_000),
    "test": range(2_000_000, 2_100_000),
}


def split_seeds(split: str, n: int, start: int = 0) -> list[int]:
    """``n`` consecutive seeds of ``split`` beginning at index ``start`` within it."""
    r = _range(split)
    if start < 0 or start + n > len(r):
        raise ValueError(f"split {split!r} holds {len(r)} seeds; asked for [{start}, {start + n})")
    return list(r[start : start + n])


def split_of(seed: int) -> str:
    """The split a seed belongs to; raises for a seed outside every split."""
    for name, r in SPLITS.items():
        if seed in r:
            return name
    raise ValueError(f"seed {seed} lies in no split; valid ranges: {_describe()}")


def check_seeds(seeds: list[int], split: str) -> None:
    """Refuse any seed that is not in ``split`` (e.g. a test seed used for training)."""
    r = _range(split)
    bad = [s for s in seeds if s not in r]
    if bad:
        raise ValueError(f"seeds {bad[:5]} are not {split!r} seeds (range {r.start}..{r.stop - 1}); "
                         f"use vla_rl.splits.split_seeds({split!r}, n)")


def _range(split: str) -> range:
    try:
        return SPLITS[split]
    except KeyError:
        raise ValueError(f"unknown split {split!r}; valid: {list(SPLITS)}") from None


def _describe() -> str:
    return ", ".join(f"{k}={r.start}..{r.stop - 1}" for k, r in SPLITS.items())
