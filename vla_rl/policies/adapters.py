"""Fitting a large policy into a GPU for RL: LoRA adapters (peft), frozen weights stored in bfloat16, activation
checkpointing. Any `Policy` (the tiny VLA, an OpenVLA checkpoint) takes them; checkpoints stay plain.

* `add_lora` injects peft's LoRA layers into the linear layers whose names end with ``target_modules`` and leaves
  only the adapters (and the ``modules_to_save`` prefixes) trainable. A forward is then W x + (alpha / r) B A x
  with B = 0 at the start, so the policy acts as before its first update.
* `merged` swaps every LoRA layer for a plain linear layer holding W + (alpha / r) B A while a checkpoint is
  written: the folder has the policy's own keys and loads without peft (into the same class, or exported to
  OpenVLA's layout). The LoRA layers, with their unmerged weights, are put back afterwards.
* `adapter_state` / `load_adapter_state`: the trainable tensors by their injected names, what a resumed LoRA run
  needs on top of its init checkpoint (whose frozen weights never change).
* `store_frozen_in` casts the frozen floating-point parameters to a dtype (bfloat16 halves the weights that do
  not learn); trainable parameters and so AdamW's moments stay float32. Forward passes then run under
  ``torch.autocast`` in that dtype (the trainer's `autocast`).
* `set_activation_checkpointing` recomputes the transformers sub-models' activations in the backward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

LORA_MARK = "lora_"  # peft's adapter tensors: lora_A, lora_B (and lora_embedding_*, lora_magnitude_*)


def add_lora(policy: nn.Module, rank: int, alpha: float, dropout: float, target_modules: list[str],
             modules_to_save: list[str]) -> list[nn.Parameter]:
    """Inject LoRA adapters of ``rank`` into ``policy`` (in place) and freeze every other parameter but those under
    the ``modules_to_save`` name prefixes; returns the trainable parameters.

    Raises:
        ValueError: no linear layer's name ends with one of ``target_modules`` (the names that exist are listed).
    """
    import peft

    linear = sorted({n.rsplit(".", 1)[-1] for n, m in policy.named_modules() if isinstance(m, nn.Linear)})
    if not set(target_modules) & set(linear):
        raise ValueError(f"model.lora.target_modules {target_modules} match no linear layer of this policy; its "
                         f"linear layers end with: {', '.join(linear)}")
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules))
    peft.inject_adapter_in_model(config, policy)
    trainable = []
    for name, p in policy.named_parameters():
        p.requires_grad_(LORA_MARK in name or any(name.startswith(pre) for pre in modules_to_save))
        if p.requires_grad:
            trainable.append(p)
    return trainable


def has_lora(policy: nn.Module) -> bool:
    return any(LORA_MARK in n for n, _ in policy.named_parameters())


def _lora_layers(policy: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute, layer) of every peft LoRA layer."""
    from peft.tuners.lora import LoraLayer

    out = []
    for name, module in policy.named_modules():
        if isinstance(module, LoraLayer):
            parent_name, _, attr = name.rpartition(".")
            out.append((policy.get_submodule(parent_name) if parent_name else policy, attr, module))
    return out


@contextmanager
def merged(policy: nn.Module) -> Iterator[nn.Module]:
    """``policy`` with each LoRA layer replaced by a plain linear layer of the merged weight (a new tensor in the
    base weight's dtype; the adapters and the base weight are untouched), restored on exit. A no-op without LoRA."""
    layers = _lora_layers(policy) if has_lora(policy) else []
    try:
        for parent, attr, layer in layers:
            base = layer.get_base_layer()
            plain = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None, device="meta")
            delta = sum(layer.get_delta_weight(a) for a in layer.active_adapters)
            plain.weight = nn.Parameter((base.weight.float() + delta.float()).to(base.weight.dtype),
                                        requires_grad=False)
            if base.bias is not None:
                plain.bias = base.bias
            setattr(parent, attr, plain)
        yield policy
    finally:
        for parent, attr, layer in layers:
            setattr(parent, attr, layer)


def adapter_state(policy: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable tensors (adapters and modules_to_save) by name, detached copies on the CPU."""
    return {n: p.detach().to("cpu", copy=True) for n, p in policy.named_parameters() if p.requires_grad}


def load_adapter_state(policy: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `adapter_state`'s tensors back into ``policy`` (the same injection).

    Raises:
        ValueError: the names differ from the policy's trainable parameters (another LoRA setting).
    """
    params = dict(policy.named_parameters())
    mine = {n for n, p in params.items() if p.requires_grad}
    if set(state) != mine:
        raise ValueError(f"the saved adapters do not fit this policy: {len(set(state) - mine)} saved tensors it lacks, "
                         f"{len(mine - set(state))} of its own not saved; resume with the run's model.lora settings")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)


def store_frozen_in(policy: nn.Module, dtype: torch.dtype) -> int:
    """Cast every frozen floating-point parameter of ``policy`` to ``dtype``; returns how many elements were cast."""
    n = 0
    for p in policy.parameters():
        if not p.requires_grad and p.is_floating_point() and p.dtype != dtype:
            p.data = p.data.to(dtype)
            n += p.numel()
    return n


def set_activation_checkpointing(policy: nn.Module, on: bool) -> int:
    """Activation checkpointing on or off in every transformers model inside ``policy`` (the outermost ones);
    returns how many were set.

    Raises:
        ValueError: ``on`` and the policy holds no transformers model (nothing would be checkpointed).
    """
    from transformers import PreTrainedModel

    models = [m for m in policy.modules() if isinstance(m, PreTrainedModel)]
    outer = [m for m in models if not any(m is not o and any(m is s for s in o.modules()) for o in models)]
    if on and not outer:
        raise ValueError(f"model.activation_checkpointing: {type(policy).__name__} holds no transformers model to "
                         "checkpoint")
    for m in outer:
        if hasattr(m, "activation_checkpointing_enable"):  # transformers >= 5 (the gradient_* names are deprecated)
            if on:
                m.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                m.activation_checkpointing_disable()
        elif on:
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        else:
            m.gradient_checkpointing_disable()
    return len(outer)
