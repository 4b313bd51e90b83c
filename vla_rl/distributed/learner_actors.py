"""Learner ranks as Ray actors: an iteration's update over ``distributed.learner_ranks`` data-parallel ranks, each a
Ray actor placed by its resource request, retried on fresh actors when one is lost.

Every rank (`LearnerRank`: a `GRPOTrainer` without envs joined to the ranks' `DataParallel` group, its policy and
AdamW sharded with ``learner_sharding: fsdp``) runs `GRPOTrainer.update` on the whole rollout, forwarding its shard
of each minibatch (`vla_rl.distributed.learner`); the ranks take the same steps and end in the same state.

State. The ranks keep the policy and the optimizer between updates (`LearnerGroup.learn`). The driver sends its full
state (`state_of`: policy, optimizer, generator, counters) once, when the actors start; each update it sends the
rollout, its generator, counters and learning rate, and rank 0 returns only what the driver rolls out with: the
trainable parameters' full values (LoRA: the adapters, not the frozen weights), the generator, counters and metrics.
The driver loads them into its own policy, which so stays equal to the ranks' (tested). Its optimizer is stale
until it checkpoints: `GRPOTrainer.save_state` first gathers the ranks' optimizer state (`LearnerGroup.sync`). Per
update that is the trainable parameters one way (a 7B full fine-tune: ~1x the parameters; LoRA: megabytes) instead
of policy + AdamW moments (~3x) each way. The last full state stays in the object store (one copy, replaced at each
checkpoint) for fresh actors to load. `LearnerGroup.update` keeps the simple exchange (the full state both ways each
update) for callers that hold no state on the ranks.

Faults. A rank lost mid-call (its actor killed, its node gone, a collective past ``learner_timeout_s``) fails the
attempt: every rank of it is killed and fresh ones start. They load the last full state the driver holds (the
start's, or the last checkpoint's gather) and replay the updates logged since (the same rollouts, generator states,
counters and learning rates), then the failed call runs again: the run ends with the parameters of an undisturbed
one (equal, not just close: the same ranks on the same rows). The log holds the object-store references of those
rollouts and is cleared at each full-state gather, so it spans at most ``checkpoint.every`` updates. After
``learner_retries`` failed retries of one call the run stops with `LearnerFailed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from vla_rl.distributed.cluster import connect
from vla_rl.distributed.learner import DataParallel, LearnerRankLost, free_tcp_address

logger = logging.getLogger(__name__)


class LearnerFailed(RuntimeError):
    """The update failed on fresh learner actors more times than ``distributed.learner_retries`` allows."""


class LearnerRank:
    """One data-parallel rank in a Ray actor: a `GRPOTrainer` built from the run's config without envs, which keeps
    its (sharded) policy and optimizer between calls: `load` a full state, `step` an update, `gather` the state."""

    def __init__(self, cfg: Any, rank: int, world_size: int) -> None:
        from vla_rl.trainers.grpo import GRPOTrainer

        self.rank, self.world_size = rank, world_size
        self.trainer = GRPOTrainer(cfg, learner_only=True)
        self.timeout_s = cfg.distributed.learner_timeout_s
        self.dp: DataParallel | None = None

    def address(self) -> str:
        """``tcp://host:port`` on this actor's node, free now (rank 0's: the group's rendezvous)."""
        import ray

        return free_tcp_address(ray.util.get_node_ip_address())

    def join(self, init_method: str) -> int:
        """Join the ranks' process group (NCCL where the policy is on a GPU, else gloo); returns this pid."""
        import os

        on_gpu = next(self.trainer.policy.parameters()).is_cuda
        self.dp = DataParallel.init(self.rank, self.world_size, init_method, "nccl" if on_gpu else "gloo",
                                    self.timeout_s)
        if self.trainer.cfg.distributed.learner_sharding == "fsdp":
            from vla_rl.distributed.fsdp import shard_trainer

            shard_trainer(self.trainer, self.dp)  # the policy, its gradient and AdamW's moments: 1 / N here
        self.trainer.dp = self.dp
        return os.getpid()

    def weights_held(self) -> float:
        """The fraction of the policy's parameter elements this rank holds (1.0 replicated, ~1 / N sharded)."""
        from vla_rl.distributed.fsdp import local_tensor

        params = list(self.trainer.policy.parameters())
        return sum(local_tensor(p).numel() for p in params) / sum(p.numel() for p in params)

    def load(self, state: dict[str, Any]) -> None:
        """Set the driver's full ``state`` (`state_of`) on this rank (sharded: each keeps its shard; a
        collective)."""
        t, dp = self.trainer, self.dp
        if dp is not None and dp.sharded:
            from vla_rl.distributed.fsdp import load_full_state

            with dp._collective("the load of the driver's state into the shards"):
                load_full_state(t.policy, t.opt, state["policy"], state["opt"])
            load_state(t, state, policy=False, optimizer=False)
        else:
            load_state(t, state)

    def step(self, state: dict[str, Any], rollout: Any) -> dict[str, Any] | None:
        """`GRPOTrainer.update` on ``rollout`` (every rank the whole of it) from the policy and optimizer this rank
        holds, with the driver's generator, counters and ``lr`` (``state``: `state_of` without policy and
        optimizer, plus "lr"). Rank 0 returns what the driver rolls out with: the trainable parameters' full values
        ("trainable", `trainable_state`), the generator and counters after the update and its "metrics"; the others
        None."""
        t, dp = self.trainer, self.dp
        load_state(t, state, policy=False, optimizer=False)
        metrics = t.update(rollout, lr=state["lr"])
        if dp is not None and dp.sharded:
            from vla_rl.distributed.fsdp import full_trainable_state

            with dp._collective("the gather of the trainable parameters"):
                trainable = full_trainable_state(t.policy)
        else:
            trainable = trainable_state(t.policy) if self.rank == 0 else None
        if self.rank != 0:
            return None
        return state_of(t, policy=False, optimizer=False) | {"trainable": trainable, "metrics": metrics}

    def gather(self, policy: bool = False) -> dict[str, Any] | None:
        """Rank 0: the optimizer's full state dict ("opt") and, if ``policy``, the policy's ("policy"); the others
        None. A collective when sharded."""
        t, dp = self.trainer, self.dp
        if dp is not None and dp.sharded:
            from vla_rl.distributed.fsdp import full_optimizer_state, full_state

            with dp._collective("the gather of the state"):
                full = full_state(t.policy, t.opt) if policy else full_optimizer_state(t.policy, t.opt)
            if full is None:
                return None
            return {"policy": full[0], "opt": full[1]} if policy else {"opt": full}
        if self.rank != 0:
            return None
        from vla_rl.policies.base import cpu_state

        return {"opt": t.opt.state_dict()} | ({"policy": cpu_state(t.policy)} if policy else {})


def trainable_state(policy: Any) -> dict[str, Any]:
    """A CPU copy of ``policy``'s trainable parameters (``requires_grad``), keyed as in its state dict: what an
    update changes (LoRA: the adapters and modules_to_save only)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in policy.named_parameters() if p.requires_grad}


def load_trainable(policy: Any, values: dict[str, Any]) -> None:
    """Copy ``values`` (`trainable_state`) into ``policy``'s parameters of those names.

    Raises:
        ValueError: a name is not one of ``policy``'s trainable parameters (another model or another LoRA setup).
    """
    params = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    unknown = sorted(set(values) - set(params))
    if unknown or len(values) != len(params):
        raise ValueError(f"the learner ranks returned {len(values)} trainable tensors, the driver's policy has "
                       f"{len(params)} trainable parameters (not the driver's: {unknown[:3]}); the ranks and the "
                       "driver must build the policy from the same config")
    with torch.no_grad():
        for n, v in values.items():
            params[n].copy_(v)


def state_of(trainer: Any, policy: bool = True, optimizer: bool = True) -> dict[str, Any]:
    """What an update reads and changes of a `GRPOTrainer`: policy and optimizer state (if ``policy`` /
    ``optimizer``), generator, counters."""
    from vla_rl.policies.base import cpu_state

    out = {"gen": trainer.gen.get_state(), "iteration": trainer.iteration, "nan_streak": trainer.nan_streak,
           "nan_skipped": trainer.nan_skipped}
    if policy:
        out["policy"] = cpu_state(trainer.policy)
    if optimizer:
        out["opt"] = trainer.opt.state_dict()
    return out


def load_state(trainer: Any, state: dict[str, Any], policy: bool = True, optimizer: bool = True) -> None:
    """Set what `state_of` returns on ``trainer`` (the policy's weights only if ``policy``, the optimizer's state
    only if ``optimizer``)."""
    if policy:
        trainer.policy.load_state_dict(state["policy"])
    if optimizer:
        trainer.opt.load_state_dict(state["opt"])
    trainer.gen.set_state(state["gen"])
    trainer.iteration, trainer.nan_streak, trainer.nan_skipped = (state["iteration"], state["nan_streak"],
                                                                  state["nan_skipped"])


class LearnerGroup:
    """The learner actors of a run (see the module docstring): started on the first call, replaced after a fault.

    The driver's calls: `hold` (the full state the ranks start from), `step` (an update; rank 0 returns the
    trainable parameters), `gather` (the optimizer's state, at a checkpoint; it becomes the new `hold`) and, for
    callers that keep no state on the ranks, `update` (the full state both ways). `learn` and `sync` do the first
    three for a `GRPOTrainer`.

    ``after_submit(group)``: called once the ranks' calls of a `step` or `gather` attempt are in flight (fault
    injection in tests)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg, self.dist = cfg, cfg.distributed
        self.ray = connect(self.dist.address)
        self.actors: list[Any] = []
        self.pids: list[int] = []
        self.retries = 0  # calls re-run on fresh actors, over the run
        self.replayed = 0  # logged updates replayed on fresh actors, over the run
        self.after_submit: Callable[[LearnerGroup], None] | None = None
        self.base: Any = None  # ObjectRef of the full state the ranks restart from (None: none given yet)
        self.log: list[tuple[dict[str, Any], Any]] = []  # (state, rollout ref) of each update since `base`
        self.synced = False  # the ranks hold base + log

    def start(self) -> None:
        """Start the ranks (each asks for learner_cpus / learner_gpus) and join their process group."""
        ray, d = self.ray, self.dist
        remote = ray.remote(LearnerRank).options(num_cpus=d.learner_cpus, num_gpus=d.learner_gpus,
                                                 max_restarts=0, max_concurrency=1)
        self.actors = [remote.remote(self.cfg, k, d.learner_ranks) for k in range(d.learner_ranks)]
        self.synced = False
        try:
            address = ray.get(self.actors[0].address.remote(), timeout=d.learner_timeout_s)
            self.pids = ray.get([a.join.remote(address) for a in self.actors], timeout=d.learner_timeout_s)
        except Exception:
            self.kill()
            raise

    def kill(self) -> None:
        for a in self.actors:
            self.ray.kill(a, no_restart=True)
        self.actors, self.pids, self.synced = [], [], False

    # ---- the driver's calls -----------------------------------------------------------------------------------
    def hold(self, state: dict[str, Any], held: bool = False) -> None:
        """``state`` (`state_of`, with policy and optimizer) is the ranks' state from now on: put in the object
        store once, the base that fresh actors load; the log of updates since the last one is dropped. ``held``:
        the ranks hold it already (it was just gathered from them), else they load it before their next call."""
        self.base, self.log = self.ray.put(state), []
        self.synced = self.synced and held

    def step(self, state: dict[str, Any], rollout: Any) -> dict[str, Any]:
        """Rank 0's `LearnerRank.step` (trainable parameters, generator, counters, metrics) of ``rollout`` with the
        driver's ``state`` (`state_of` without policy and optimizer, plus "lr"), from the state the ranks hold;
        logged to be replayed on fresh actors until the next `hold`.

        Raises:
            LearnerFailed: the update failed ``1 + learner_retries`` times; names the last cause.
        """
        rollout_ref = self.ray.put(rollout)  # once, whatever the ranks and the attempts
        out = self._run(lambda: [a.step.remote(state, rollout_ref) for a in self.actors],
                        f"the update of iteration {state['iteration'] + 1}")
        self.log.append((state, rollout_ref))
        return out

    def gather(self, policy: bool = False) -> dict[str, Any]:
        """Rank 0's `LearnerRank.gather`: the optimizer's full state dict ("opt"), and the policy's if ``policy``."""
        return self._run(lambda: [a.gather.remote(policy) for a in self.actors], "the gather of the ranks' state")

    def update(self, state: dict[str, Any], rollout: Any) -> dict[str, Any]:
        """The update of ``rollout`` from the full ``state`` (`state_of` plus "lr"), its full state back: rank 0's
        `LearnerRank.step` result with "policy" and "opt". The ranks keep nothing the next call needs (the
        simple exchange; `learn` keeps the state on the ranks)."""
        self.hold({k: v for k, v in state.items() if k != "lr"})
        out = self.step({k: v for k, v in state.items() if k not in ("policy", "opt")}, rollout)
        return out | self.gather(policy=True)

    def learn(self, trainer: Any, rollout: Any) -> dict[str, float]:
        """``trainer``'s update of ``rollout`` on the ranks, which keep the policy and the optimizer between calls:
        the driver sends its full state only the first time, and loads back the trainable parameters, generator
        and counters (its optimizer is stale until `sync`). Returns the update's metrics."""
        if self.base is None:
            self.hold(state_of(trainer))
        out = self.step(state_of(trainer, policy=False, optimizer=False) | {"lr": trainer.set_lr()}, rollout)
        load_state(trainer, out, policy=False, optimizer=False)
        load_trainable(trainer.policy, out["trainable"])
        return out["metrics"]

    def sync(self, trainer: Any) -> None:
        """Before ``trainer`` checkpoints: its optimizer gets the ranks' state (its policy has it already), and its
        full state becomes the base of a restart (the replay log is cleared). Nothing to do before the first
        `learn`."""
        if self.base is None:
            return
        trainer.opt.load_state_dict(self.gather()["opt"])
        self.hold(state_of(trainer), held=True)

    # ---- attempts and restarts --------------------------------------------------------------------------------
    def _run(self, calls: Callable[[], list[Any]], what: str) -> Any:
        """Rank 0's result of ``calls()`` (one call per rank), on fresh actors brought to the state the ranks held
        (the base, then the logged updates replayed) after a lost rank."""
        ray = self.ray
        errors: list[str] = []
        for attempt in range(self.dist.learner_retries + 1):
            if attempt:
                self.retries += 1
                logger.warning("learner rank lost (%s): %s retried on fresh actors (%d of %d)", errors[-1], what,
                               attempt, self.dist.learner_retries)
            try:
                if not self.actors:
                    self.start()
                if not self.synced:
                    self._restore()
                return self._attempt(calls(), hook=True)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, LearnerRankLost) as e:
                errors.append(f"{type(e).__name__}: {str(e).splitlines()[0].rstrip('.') if str(e) else ''}")
                self.kill()
        raise LearnerFailed(f"{what} failed on {self.dist.learner_retries + 1} sets of {self.dist.learner_ranks} "
                            f"learner actors (distributed.learner_retries={self.dist.learner_retries}); last: "
                            f"{errors[-1]}. The state before it is the last checkpoint: fix the cause (see the "
                            "actors' logs), then checkpoint.resume=true")

    def _restore(self) -> None:
        """Bring the ranks to the state they held: load the base, replay the logged updates (same rollouts,
        generator states, counters and learning rates: the same steps)."""
        if self.base is None:
            raise RuntimeError("LearnerGroup: no state to start the ranks from; call hold(state) first")
        self._attempt([a.load.remote(self.base) for a in self.actors])
        for state, rollout_ref in self.log:
            self._attempt([a.step.remote(state, rollout_ref) for a in self.actors])
            self.replayed += 1
        self.synced = True

    def _attempt(self, pending: list[Any], hook: bool = False) -> Any:
        """Rank 0's result of the calls ``pending`` (one per rank, in rank order), the first failure raised;
        ``hook``: `after_submit` is called once they are in flight."""
        ray = self.ray
        rank_of = {ref: k for k, ref in enumerate(pending)}
        if hook and self.after_submit is not None:
            self.after_submit(self)
        result = None
        while pending:  # the first failure ends the attempt: the survivors would wait for the lost rank
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                out = ray.get(ready[0])
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(e.cause, Exception) else None
                if isinstance(cause, LearnerRankLost):
                    raise cause from None
                raise e.as_instanceof_cause() from None
            if rank_of[ready[0]] == 0:
                result = out
        return result

    def close(self) -> None:
        if self.actors:
            self.kill()
