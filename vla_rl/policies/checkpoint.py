"""Reading a checkpoint's weights with an error a user can act on: one line naming the file and what is wrong
(safetensors' own error is a Rust exception whose traceback names neither)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class CheckpointError(ValueError):
    """A checkpoint file that is missing, truncated or corrupt."""


def load_weights(path: str | Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path``.

    Raises:
        CheckpointError: the file is missing, or safetensors cannot read it (truncated by an interrupted copy,
            corrupt), naming the file, its size and safetensors' reason.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a checkpoint folder holds config.json and model.safetensors")
    try:
        return load_file(str(path), device=device)
    except SafetensorError as e:
        raise CheckpointError(f"{path} ({path.stat().st_size} bytes) is truncated or corrupt: {e}; copy it "
                              "again, or point at another checkpoint (best/, last/)") from None


def state_mismatches(own: dict[str, torch.Tensor], weights: dict[str, torch.Tensor], limit: int = 5) -> list[str]:
    """What keeps ``weights`` from loading strictly into a model whose state dict is ``own``: mis-shaped tensors,
    then the first ``limit`` missing and unexpected names (empty: they fit)."""
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
           for k, v in weights.items() if k in own and own[k].shape != v.shape]
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    return bad + [f"missing {m}" for m in missing[:limit]] + [f"unexpected {u}" for u in unexpected[:limit]]
