"""What the FSDP tests run in each rank (imported by them and by the spawned ranks, not collected): GRPO updates of the
micro VLA on saved rollouts, by one process or by ranks sharded with `vla_rl.distributed.fsdp`."""

from __future__ import annotations

from typing import Any

import torch

from bench.data_parallel_bench import learner
from vla_rl.distributed.fsdp import full_state, load_full_state, local_tensor, shard_trainer
from vla_rl.distributed.learner import DataParallel


def flat(state: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    """The tensors ``names`` of a state dict, flattened and concatenated in float32."""
    return torch.cat([state[n].float().flatten() for n in names])


def one_process(init: str, rollouts: list[str], out: str, groups: dict) -> dict[str, Any]:
    """`GRPOTrainer.update` on each saved rollout in turn, in this process: each update's metrics, the final state
    dict, the trainable parameters' names and the optimizer's state dict."""
    t = learner(init, out, **groups)
    try:
        metrics = [t.update(torch.load(r, weights_only=False)) for r in rollouts]
        names = [n for n, p in t.policy.named_parameters() if p.requires_grad]
        return {"metrics": metrics, "state": {k: v.detach().clone() for k, v in t.policy.state_dict().items()},
                "names": names, "opt": t.opt.state_dict()}
    finally:
        t.close()


def ranks(dp: DataParallel, init: str, rollouts: list[str], out: str, groups: dict, sharding: str = "fsdp",
          resume_before: int | None = None) -> dict[str, Any]:
    """The same updates by data-parallel ranks, sharded (``sharding`` fsdp: `shard_trainer`) or replicated.
    ``resume_before`` (fsdp): before that update, the full state (`full_state`) goes to a fresh set of sharded
    trainers (`load_full_state`), as the driver's state reaches fresh learner actors after a fault or a resume.
    Returns what `one_process` does (the state from rank 0 only), the FSDP units and the fractions of the weights
    and of Adam's moments this rank holds."""
    t = learner(init, f"{out}/rank{dp.rank}", **groups)
    if sharding == "fsdp":
        shard_trainer(t, dp)
    else:
        dp.broadcast_parameters(t.policy)
        t.dp = dp
    metrics = []
    try:
        for i, r in enumerate(rollouts):
            if i == resume_before:
                t = _resumed(t, dp, init, f"{out}/resumed{dp.rank}", groups)
            metrics.append(t.update(torch.load(r, weights_only=False)))
        names = [n for n, p in t.policy.named_parameters() if p.requires_grad]
        units = sum(1 for m in t.policy.modules() if type(m).__name__.startswith("FSDP"))
        held = [local_tensor(v) for st in t.opt.state.values() for v in st.values() if v.dim()]  # Adam's moments here
        held_fraction = sum(x.numel() for x in held) / (2 * sum(p.numel() for p in t.opt.state))
        weights_fraction = sum(local_tensor(p).numel() for p in t.policy.parameters()) / sum(
            p.numel() for p in t.policy.parameters())
        state = full_state(t.policy, t.opt) if sharding == "fsdp" else (
            ({k: v.detach().clone() for k, v in t.policy.state_dict().items()}, t.opt.state_dict()))
        return {"metrics": metrics, "state": state and state[0], "names": names, "opt": state and state[1],
                "units": units, "weights_here": weights_fraction, "moments_here": held_fraction}
    finally:
        t.close()
        dp.sharded = False


def cases(dp: DataParallel, init: str, out: str, runs: list[dict]) -> list[dict[str, Any]]:
    """`ranks` for each of ``runs`` (its keyword arguments), one after the other in this process group."""
    return [ranks(dp, init, out=f"{out}/{k}", **run) for k, run in enumerate(runs)]


def _resumed(t: Any, dp: DataParallel, init: str, out: str, groups: dict) -> Any:
    """A fresh sharded trainer holding ``t``'s state (passed through a full state dict, as to the driver and back),
    ``t`` closed."""
    state = full_state(t.policy, t.opt)
    box = [state]
    torch.distributed.broadcast_object_list(box, 0)  # every rank loads the whole of it, as from the object store
    weights, opt_state = box[0]
    gen = t.gen.get_state()
    t.close()
    fresh = learner(init, out, **groups)
    shard_trainer(fresh, dp)
    load_full_state(fresh.policy, fresh.opt, weights, opt_state)
    fresh.gen.set_state(gen)
    return fresh
