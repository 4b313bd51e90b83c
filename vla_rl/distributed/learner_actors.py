"""Learner ranks as Ray actors: an iteration's update over ``distributed.learner_ranks`` data-parallel ranks, each a
Ray actor placed by its resource request, retried on fresh actors when one is lost.

The driver stays the owner of the run's state (the policy, the optimizer, the generator, the counters): it
checkpoints exactly as before, and a lost rank loses nothing but the update in flight. For each update
(`LearnerGroup.update`) it puts the state and the rollout in the object store once; every rank
(`LearnerRank`: a `GRPOTrainer` without envs joined to the ranks' `DataParallel` group) loads the state, runs
`GRPOTrainer.update` on the whole rollout forwarding its shard of each minibatch (`vla_rl.distributed.learner`),
and rank 0 returns the new state. The ranks end in the same state (every rank takes the same step), so one copy
suffices. The state goes both ways each update (policy + optimizer, ~3x the parameters): simple and exact, and the
cost of a retry from the state before the update; holding it on the ranks between updates is the optimisation
left for large policies.

A rank lost mid-update (its actor killed, its node gone, a collective past ``learner_timeout_s``) fails the
attempt: every rank of it is killed, fresh ones start, and the same update is run again from the same state on
the same rollout, so it ends with the parameters of an undisturbed update (equal, not just close: the same ranks
on the same rows). After ``learner_retries`` failed retries the run stops with `LearnerFailed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from vla_rl.distributed.cluster import connect
from vla_rl.distributed.learner import DataParallel, LearnerRankLost, free_tcp_address

logger = logging.getLogger(__name__)


class LearnerFailed(RuntimeError):
    """The update failed on fresh learner actors more times than ``distributed.learner_retries`` allows."""


class LearnerRank:
    """One data-parallel rank in a Ray actor: a `GRPOTrainer` built from the run's config without envs."""

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

    def update(self, state: dict[str, Any], rollout: Any) -> dict[str, Any] | None:
        """`GRPOTrainer.update` from the driver's ``state`` (`state_of`) on ``rollout`` (every rank the whole of
        it); rank 0 returns the state after it and the update's metrics, the others None. Sharded ranks: each loads
        its shard of the state, and rank 0 returns the full state after the update, gathered."""
        t = self.trainer
        if self.dp is not None and self.dp.sharded:
            return self._sharded_update(state, rollout)
        load_state(t, state)
        metrics = t.update(rollout, lr=state["lr"])
        return state_of(t) | {"metrics": metrics} if self.rank == 0 else None

    def _sharded_update(self, state: dict[str, Any], rollout: Any) -> dict[str, Any] | None:
        from vla_rl.distributed.fsdp import full_state, load_full_state

        t, dp = self.trainer, self.dp
        assert dp is not None
        with dp._collective("the load of the driver's state into the shards"):
            load_full_state(t.policy, t.opt, state["policy"], state["opt"])
        load_state(t, state, policy=False, optimizer=False)
        metrics = t.update(rollout, lr=state["lr"])
        with dp._collective("the gather of the state after the update"):
            full = full_state(t.policy, t.opt)
        if full is None:
            return None
        return state_of(t, policy=False, optimizer=False) | {"policy": full[0], "opt": full[1], "metrics": metrics}


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
    """The learner actors of a run (see the module docstring); started on the first update, replaced after a fault.

    ``after_submit(group)``: called once an attempt's update calls are in flight (fault injection in tests)."""

    def __init__(self, cfg: Any) -> None:
        self.cfg, self.dist = cfg, cfg.distributed
        self.ray = connect(self.dist.address)
        self.actors: list[Any] = []
        self.pids: list[int] = []
        self.retries = 0  # updates re-run on fresh actors, over the run
        self.after_submit: Callable[[LearnerGroup], None] | None = None

    def start(self) -> None:
        """Start the ranks (each asks for learner_cpus / learner_gpus) and join their process group."""
        ray, d = self.ray, self.dist
        remote = ray.remote(LearnerRank).options(num_cpus=d.learner_cpus, num_gpus=d.learner_gpus,
                                                 max_restarts=0, max_concurrency=1)
        self.actors = [remote.remote(self.cfg, k, d.learner_ranks) for k in range(d.learner_ranks)]
        try:
            address = ray.get(self.actors[0].address.remote(), timeout=d.learner_timeout_s)
            self.pids = ray.get([a.join.remote(address) for a in self.actors], timeout=d.learner_timeout_s)
        except Exception:
            self.kill()
            raise

    def kill(self) -> None:
        for a in self.actors:
            self.ray.kill(a, no_restart=True)
        self.actors, self.pids = [], []

    def update(self, state: dict[str, Any], rollout: Any) -> dict[str, Any]:
        """Rank 0's state after the update of ``rollout`` from ``state`` (`LearnerRank.update`), retried on fresh
        actors after a lost rank.

        Raises:
            LearnerFailed: the update failed ``1 + learner_retries`` times; names the last cause.
        """
        ray = self.ray
        state_ref, rollout_ref = ray.put(state), ray.put(rollout)  # once, whatever the ranks and the attempts
        errors: list[str] = []
        for attempt in range(self.dist.learner_retries + 1):
            if attempt:
                self.retries += 1
                logger.warning("learner rank lost (%s): update retried on fresh actors (%d of %d)", errors[-1],
                               attempt, self.dist.learner_retries)
            try:
                if not self.actors:
                    self.start()
                return self._attempt(state_ref, rollout_ref)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError, LearnerRankLost) as e:
                errors.append(f"{type(e).__name__}: {str(e).splitlines()[0].rstrip('.') if str(e) else ''}")
                self.kill()
        raise LearnerFailed(f"the update of iteration {state['iteration'] + 1} failed on "
                            f"{self.dist.learner_retries + 1} sets of {self.dist.learner_ranks} learner actors "
                            f"(distributed.learner_retries={self.dist.learner_retries}); last: {errors[-1]}. The "
                            "state before it is the last checkpoint: fix the cause (see the actors' logs), then "
                            "checkpoint.resume=true")

    def _attempt(self, state_ref: Any, rollout_ref: Any) -> dict[str, Any]:
        ray = self.ray
        pending = [a.update.remote(state_ref, rollout_ref) for a in self.actors]
        rank_of = {ref: k for k, ref in enumerate(pending)}
        if self.after_submit is not None:
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
        assert result is not None
        return result

    def close(self) -> None:
        if self.actors:
            self.kill()

