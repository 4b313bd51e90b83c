"""Which torch device a run's policy lives on: ``auto`` (the GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``."""

from __future__ import annotations

import re

import torch

DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"


def resolve_device(name: str) -> torch.device:
    """The device ``name`` means on this machine (``auto``: ``cuda`` if torch sees a GPU, else ``cpu``).

    Raises:
        ValueError: ``name`` is not one of the forms above, or asks for a GPU this machine does not have.
    """
    if not re.match(DEVICE_PATTERN, name):
        raise ValueError(f"device {name!r}: use auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}, but torch sees no GPU here (torch {torch.__version__}, "
                             f"built with CUDA {torch.version.cuda}): use device=cpu or device=auto, or install a "
                             "CUDA build of torch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}, but this machine has {torch.cuda.device_count()} GPU(s)")
    return device
