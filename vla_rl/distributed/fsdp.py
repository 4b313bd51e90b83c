"""Sharded learner ranks (``distributed.learner_sharding: fsdp``): each rank holds 1 / N of the policy's parameters,
gradients and AdamW moments (PyTorch's FSDP2, `torch.distributed.fsdp.fully_shard`) instead of a full replica.

What changes against the replicated ranks of `vla_rl.distributed.learner`, and what does not:

* The split of the work is the same: every rank draws the same minibatches and forwards its shard of each one's
  rows; the log-probs are all-gathered so that the loss sees the whole minibatch (`DataParallel.gather_rows`).
* The gradient reduction moves into the backward: FSDP reduce-scatters each unit's gradients as its backward ends.
  The reduction is set to a plain SUM (divide factor 1, sum-only collectives: gloo has no PREMUL_SUM), so each
  rank's gradient shard is the sum over the ranks of their rows' parts: the gradient of the whole minibatch, as the
  replicated ranks' all-reduce forms it. Every rank runs the forward and the backward of every minibatch, one with
  an empty shard too (`logprobs` forwards one row it then drops), because the all-gathers and reduce-scatters are
  collectives.
* The gradient norm for clipping is the global one (`clip_grad_norm`: the squared norms of the local shards summed
  over the ranks), so the clip and the non-finite guard take the same decision on every rank.
* Units (`shard_policy`): each block of the policy's outermost stacks of blocks (`block_lists`: the LM's decoder
  layers, the vision towers' blocks; found by structure, whatever the policy class), then the root, which holds the rest
  (embeddings, projector, LM head). Parameters stay float32 where they learn (a LoRA run's frozen bfloat16 weights
  are gathered as they are stored): the update is the replicated one up to float summation order.
* State: the ranks keep their shards between updates (`vla_rl.distributed.learner_actors`). `full_state` gathers
  the policy's and the optimizer's full (unsharded) state dicts on rank 0 in the plain ``state_dict()`` layouts the
  driver's own policy and optimizer load (`full_trainable_state`: the trainable parameters only, each update;
  `full_optimizer_state`: the optimizer's, at a checkpoint); `load_full_state` sets them on the sharded ranks (each
  keeps its shard).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

SHARDED_METHODS = ("logprobs",)  # policy methods other than forward that run the model (FSDP gathers around them)


def block_lists(module: nn.Module) -> list[nn.Module]:
    """The outermost stacks of blocks under ``module``, in module order: `nn.ModuleList`s whose children hold
    parameters (transformers' decoder and encoder layers) and `nn.Sequential`s of two or more children of one class
    that hold parameters (timm's ``blocks``); a plain Sequential of mixed layers (a projector MLP) is none."""
    found: list[tuple[str, nn.Module]] = []
    for name, m in module.named_modules():
        if any(name.startswith(f"{outer}.") for outer, _ in found):
            continue
        blocks = list(m.children())
        stacked = isinstance(m, nn.ModuleList) or (
            isinstance(m, nn.Sequential) and len(blocks) >= 2 and len({type(b) for b in blocks}) == 1)
        if stacked and any(True for b in blocks for _ in b.parameters()):
            found.append((name, m))
    return [m for _, m in found]


def shard_policy(policy: nn.Module, device: torch.device) -> int:
    """Shard ``policy`` in place over the default process group (FSDP2 units: every block of its `block_lists`,
    then the root), with the gradients reduced as a plain sum; returns the number of units. Its
    `SHARDED_METHODS` become FSDP forward methods (the parameters are gathered around them as around forward).

    Call it after the policy is set up for training (LoRA, frozen dtype, activation checkpointing), and build the
    optimizer afterwards (`rebuild_optimizer`): sharding replaces the parameters."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    units = [child for blocks in block_lists(policy) for child in blocks]
    for unit in units:
        fully_shard(unit, mesh=mesh)
    fully_shard(policy, mesh=mesh)
    # FSDP warns that logprobs returns views (an in-place op on one would skip the gradient's all-gather); the
    # trainer only slices and concatenates them
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    for method in SHARDED_METHODS:
        if hasattr(policy, method):
            register_fsdp_forward_method(policy, method)
    for m in [*units, policy]:
        m.set_gradient_divide_factor(1.0)  # the gradient is the sum of the ranks' parts, not their mean
        m.set_force_sum_reduction_for_comms(True)  # SUM collectives only (no PREMUL_SUM / AVG: gloo lacks them)
    return len(units) + 1


def parameter_names(module: nn.Module, opt: torch.optim.Optimizer) -> list[list[str]]:
    """The names in ``module`` of each parameter group's parameters of ``opt``, in order."""
    name_of = {id(p): n for n, p in module.named_parameters()}
    missing = [p.shape for g in opt.param_groups for p in g["params"] if id(p) not in name_of]
    if missing:
        raise ValueError(f"{len(missing)} optimizer parameters (shapes {missing[:3]}) are not the module's")
    return [[name_of[id(p)] for p in g["params"]] for g in opt.param_groups]


def rebuild_optimizer(opt: torch.optim.Optimizer, names: list[list[str]], module: nn.Module) -> torch.optim.Optimizer:
    """A fresh optimizer of ``opt``'s class and settings over ``module``'s parameters of the same ``names``
    (`parameter_names`, taken before sharding replaced them), group for group."""
    params = dict(module.named_parameters())
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": [params[n] for n in group_names]}
              for g, group_names in zip(opt.param_groups, names, strict=True)]
    fresh = type(opt)(groups)  # every setting travels in the groups
    fresh.defaults.update(opt.defaults)
    return fresh


def shard_trainer(trainer: Any, dp: Any) -> None:
    """Make a learner rank's `GRPOTrainer` a sharded one: its policy (and its KL reference, forward only) sharded
    over ``dp``'s group (`shard_policy`), its optimizer rebuilt over the sharded parameters (no step taken yet: load
    the driver's state next, `load_full_state`), ``dp`` marked sharded and joined to the trainer."""
    names = parameter_names(trainer.policy, trainer.opt)
    if trainer.opt.state:
        raise ValueError("shard_trainer: the optimizer has taken steps; shard before the first update, then load "
                         "the state (load_full_state)")
    shard_policy(trainer.policy, dp.device)
    if trainer.ref is not None:
        shard_policy(trainer.ref, dp.device)
    trainer.opt = rebuild_optimizer(trainer.opt, names, trainer.policy)
    dp.sharded = True
    trainer.dp = dp


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of ``t`` when it is a sharded DTensor, else ``t``."""
    from torch.distributed.tensor import DTensor

    return t.to_local() if isinstance(t, DTensor) else t


@torch.no_grad()
def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip the gradients of ``params`` (sharded DTensors or plain tensors) to the global L2 norm ``max_norm``, as
    `torch.nn.utils.clip_grad_norm_` does in one process; returns the norm before clipping (float32 scalar, the same
    on every rank). A sharded gradient's squared norm is summed over the ranks; a plain one counts once."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    sharded = [local_tensor(g).float().pow(2).sum() for g in grads if isinstance(g, DTensor)]
    plain = [g.float().pow(2).sum() for g in grads if not isinstance(g, DTensor)]
    squares = torch.stack(sharded).sum() if sharded else torch.zeros((), device=local_tensor(grads[0]).device)
    if sharded:
        dist.all_reduce(squares)
    total = (squares.cpu() + (torch.stack(plain).sum().cpu() if plain else 0.0)).sqrt()
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        local_tensor(g).mul_(coef.to(local_tensor(g).device, local_tensor(g).dtype))
    return total


# ---- the driver's full state <-> the sharded ranks -------------------------------------------------------------
def _options(cpu_offload: bool, strict: bool = True, ignore_frozen: bool = False) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload, strict=strict,
                            ignore_frozen_params=ignore_frozen)


def full_state(policy: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The full (unsharded) state dicts of the sharded ``policy`` and of ``opt`` on the CPU, in the layouts of a
    plain ``policy.state_dict()`` and ``opt.state_dict()`` (parameters numbered in group order): on rank 0; None on
    the others. A collective: every rank calls it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    weights = get_model_state_dict(policy, options=_options(True))
    opt_state = full_optimizer_state(policy, opt)
    return (weights, opt_state) if opt_state is not None else None


def full_trainable_state(policy: nn.Module) -> dict[str, torch.Tensor] | None:
    """The full values of the sharded ``policy``'s trainable parameters only (``requires_grad``; for LoRA the
    adapters and modules_to_save, not the frozen weights), on the CPU, keyed as in ``policy.state_dict()``: on
    rank 0; None on the others. A collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    weights = get_model_state_dict(policy, options=_options(True, ignore_frozen=True))
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    return {k: v for k, v in weights.items() if k in trainable} if dist.get_rank() == 0 else None


def full_optimizer_state(policy: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any] | None:
    """The full state dict of ``opt`` over the sharded ``policy`` on the CPU, in the layout of a plain
    ``opt.state_dict()`` (parameters numbered in group order): on rank 0; None on the others. A collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    if not opt.state:  # no step taken (get_* would take one of lr 0 to create every moment): nothing to gather
        return opt.state_dict() if dist.get_rank() == 0 else None
    by_name = get_optimizer_state_dict(policy, opt, options=_options(True))
    if dist.get_rank() != 0:
        return None
    return _numbered(by_name, parameter_names(policy, opt))


def load_full_state(policy: nn.Module, opt: torch.optim.Optimizer, weights: dict[str, Any],
                    opt_state: dict[str, Any]) -> None:
    """Set the full state dicts ``weights`` (a plain ``state_dict()``) and ``opt_state`` (a plain optimizer
    ``state_dict()``, parameters numbered in group order) on the sharded ``policy`` and ``opt``: each rank keeps
    its shard. Every rank passes the whole state. A collective."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(policy, weights, options=_options(False))
    names = parameter_names(policy, opt)
    named = _named(opt_state, names)
    set_optimizer_state_dict(policy, opt, named, options=_options(False, strict=False))
    # set_* first takes a step of lr 0 so that every parameter has a state; a parameter that had none (no gradient
    # yet) gets none again, as in the driver's optimizer (Adam would count that step)
    params = dict(policy.named_parameters())
    for n in {n for group_names in names for n in group_names} - set(named["state"]):
        opt.state.pop(params[n], None)


def _numbered(state: dict[str, Any], names: list[list[str]]) -> dict[str, Any]:
    """An optimizer state dict keyed by parameter name -> the plain layout (parameters numbered in group order)."""
    index, groups, at = {}, [], 0
    for g, group_names in zip(state["param_groups"], names, strict=True):
        ids = list(range(at, at + len(group_names)))
        index |= dict(zip(group_names, ids, strict=True))
        groups.append({k: v for k, v in g.items() if k != "params"} | {"params": ids})
        at += len(group_names)
    return {"state": {index[n]: s for n, s in state["state"].items()}, "param_groups": groups}


def _named(state: dict[str, Any], names: list[list[str]]) -> dict[str, Any]:
    """The inverse of `_numbered`."""
    flat = [n for group_names in names for n in group_names]
    groups = [{k: v for k, v in g.items() if k != "params"} | {"params": [flat[i] for i in g["params"]]}
              for g in state["param_groups"]]
    return {"state": {flat[i]: s for i, s in state["state"].items()}, "param_groups": groups}
