"""The weight files of an OpenVLA folder: reading them (shards + index, OFT's ``.pt`` components with or without
DDP's ``module.`` prefix) with errors that name what is missing, and writing them back in the same layout."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from vla_rl.policies.openvla.configuration_openvla import OpenVLAFolderError, read_json

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
# OFT's separately saved components, ``<name>--<step>_checkpoint.pt``, and the parameter prefix each gets in ours.
COMPONENTS = ("action_head", "proprio_projector")


def shard_files(folder: Path) -> list[Path]:
    """The safetensors files holding the model: the shards the index lists, or ``model.safetensors``."""
    index = folder / INDEX
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise OpenVLAFolderError(f"{index}: no weight_map")
        shards = [folder / s for s in sorted(set(weight_map.values()))]
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise OpenVLAFolderError(f"{folder}: missing shard(s) {', '.join(missing)} listed in {INDEX}; copy "
                                     "them again (an interrupted download leaves the index without its shards)")
        return shards
    if (folder / SINGLE).is_file():
        return [folder / SINGLE]
    raise OpenVLAFolderError(f"{folder}: no weights ({INDEX} with its shards, or {SINGLE})")


def weight_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape, from the safetensors headers (nothing is loaded), plus the OFT components'."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for f in shard_files(folder):
        with safe_open(str(f), "pt") as st:
            for k in st.keys():  # noqa: SIM118  (safe_open is not a mapping)
                shapes[k] = tuple(st.get_slice(k).get_shape())
    for name, (_, state) in component_files(folder).items():
        shapes.update({f"{name}.{k}": tuple(v.shape) for k, v in state.items()})
    return shapes


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of the folder under our names: the safetensors' keys as they are, the OFT components' under
    ``action_head.`` / ``proprio_projector.``."""
    from vla_rl.policies.checkpoint import load_weights as load_file

    out: dict[str, torch.Tensor] = {}
    for f in shard_files(folder):
        out.update(load_file(f))
    for name, (_, state) in component_files(folder).items():
        out.update({f"{name}.{k}": v for k, v in state.items()})
    return out


def component_files(folder: Path) -> dict[str, tuple[Path, dict[str, torch.Tensor]]]:
    """OFT's ``<name>--<step>_checkpoint.pt`` files present in ``folder`` -> (path, state with ``module.`` dropped).
    More than one file per component is refused (which step would be meant?)."""
    out = {}
    for name in COMPONENTS:
        files = sorted(folder.glob(f"{name}--*checkpoint.pt"))
        if len(files) > 1:
            raise OpenVLAFolderError(f"{folder}: {len(files)} {name} checkpoints ({', '.join(f.name for f in files)});"
                                     " keep the one that matches the model's step")
        if files:
            state = torch.load(files[0], map_location="cpu", weights_only=True)
            out[name] = (files[0], {k.removeprefix("module."): v for k, v in state.items()})
    return out


def component_step(path: Path) -> int:
    """The training step in an OFT component file name (``action_head--150000_checkpoint.pt`` -> 150000)."""
    m = re.search(r"--(\d+)_checkpoint\.pt$", path.name)
    return int(m.group(1)) if m else 0


def write_weights(folder: Path, state: dict[str, torch.Tensor], max_shard_bytes: int, step: int) -> None:
    """Write ``state`` in OpenVLA's layout into ``folder``: the OFT components to ``<name>--<step>_checkpoint.pt``,
    the rest to safetensors shards of at most ``max_shard_bytes`` each (one tensor may exceed it) named as
    transformers names them, with ``model.safetensors.index.json``; a single shard is ``model.safetensors``."""
    from safetensors.torch import save_file

    main = {k: v.detach().contiguous().cpu() for k, v in state.items() if k.split(".")[0] not in COMPONENTS}
    for name in COMPONENTS:
        part = {k[len(name) + 1:]: v.detach().contiguous().cpu() for k, v in state.items()
                if k.startswith(name + ".")}
        if part:
            torch.save(part, folder / f"{name}--{step}_checkpoint.pt")
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k in main:  # in the state dict's order, as transformers fills its shards
        nbytes = main[k].numel() * main[k].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = main[k]
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(folder / SINGLE), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(v.numel() * v.element_size() for v in main.values())
    (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
