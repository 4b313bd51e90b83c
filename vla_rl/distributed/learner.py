"""The data-parallel learner: one GRPO update over N processes (torch.distributed: gloo on CPU, NCCL on CUDA) that
ends with the parameters one process reaches on the same global batch, to float rounding.

How the work is split. Every rank holds the whole rollout and draws the same minibatches (the trainer's generator
is broadcast from rank 0 as the update starts). Each minibatch's rows are cut into contiguous shards, one per rank
(`DataParallel.shard`); a rank runs the forward (and later the backward) of its shard only. The per-token
log-probs are then all-gathered (`gather_rows`: B x K floats, small next to the forward) so that the policy loss
is computed on the whole minibatch on every rank, with only the rank's own rows carrying gradient. Then
``d loss / d theta = sum over ranks of (the rank's rows' part)``, which `backward` forms with one all-reduce
(sum) of the gradients. This holds for every registered loss whatever its normalisation (token-mean over the
minibatch's tokens, a mean over sequences, Dr.GRPO's constant B x max_len) and also for the losses whose token
selection depends on statistics of the whole minibatch (clip_cov's covariance and random pick, kl_cov's top-k),
which a per-rank "local sum / global count" re-weighting could not reproduce. As a consequence the loss, its
metrics, the target-KL early stop, the non-finite guard and the clipped gradient norm are the same on every rank
(bitwise: all ranks see the same gathered values and the same all-reduced gradient), so the ranks take the same
optimiser steps and stay in sync without a metrics reduction.

Use. `run_data_parallel(fn, world_size)` starts ``world_size`` processes on this machine, each with its process
group and a `DataParallel` handed to ``fn(dp, *args)``; a trainer rank then does::

    trainer = GRPOTrainer(cfg)                # every rank from the same init checkpoint (envs only where rolled out)
    dp.broadcast_parameters(trainer.policy)   # start from rank 0's weights
    trainer.dp = dp                           # update() shards its minibatches, backward() all-reduces
    metrics = trainer.update(rollout)         # the same Rollout on every rank (the global batch)

Ray learner actors (`vla_rl.distributed.learner_actors`, ``distributed.learner_ranks``) do the same, one actor per
rank: `DataParallel.init(rank, world_size, init_method)` with a ``tcp://`` address of rank 0's node
(`free_tcp_address` there), the state and the rollout from the object store, rank 0 returning the state after the
update to the driver, which logs and checkpoints. With no ``dp`` (or world size 1) the trainer computes exactly
what it always did.

Faults: every collective carries ``timeout_s``; a peer that died (the connection drops) or stalls past the timeout
makes the survivors raise `LearnerRankLost` naming the operation, instead of hanging.
"""

from __future__ import annotations

import datetime
import math
import multiprocessing as mp
import os
import pickle
import queue
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

BUCKET_ELEMENTS = 1 << 23  # gradient elements per all-reduce (32 MiB of float32)


class LearnerRankLost(RuntimeError):
    """A collective of the data-parallel update failed: a peer rank died, or stalled past the timeout."""


class DataParallelFailed(RuntimeError):
    """`run_data_parallel`: a rank raised, died or overran; the message gives every rank's outcome."""


@dataclass
class DataParallel:
    """This process's place in the learner's process group (see the module docstring)."""

    rank: int
    world_size: int
    timeout_s: float = 60.0
    comm_s: float = 0.0  # seconds spent in collectives (waiting for the slowest rank included)
    sharded: bool = False  # FSDP ranks (`vla_rl.distributed.fsdp.shard_trainer`): the backward reduces the gradients

    # ---- process group ----------------------------------------------------------------------------
    @classmethod
    def init(cls, rank: int, world_size: int, init_method: str = "env://", backend: str | None = None,
             timeout_s: float = 60.0) -> DataParallel:
        """Join the process group (``init_method``: ``tcp://host:port`` of rank 0, or ``env://`` for MASTER_ADDR /
        MASTER_PORT). ``backend`` None: nccl when CUDA is available, else gloo."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside the world of {world_size} ranks (0 .. {world_size - 1})")
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(rank % torch.cuda.device_count())
        dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
        return cls(rank, world_size, timeout_s)

    def close(self) -> None:
        """Leave the process group (best effort: after a lost peer there may be nobody to say goodbye to)."""
        if dist.is_initialized():
            with suppress(RuntimeError):
                dist.destroy_process_group()

    @contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
            self.comm_s += time.perf_counter() - t0
        except RuntimeError as e:  # gloo / nccl errors (DistBackendError is one)
            raise LearnerRankLost(
                f"data-parallel rank {self.rank} of {self.world_size}: {what} failed: a peer rank died or stalled "
                f"past timeout_s={self.timeout_s:g} ({str(e).splitlines()[0]}); retry the iteration from the last "
                "state (checkpoint.resume=true)") from e

    @property
    def device(self) -> torch.device:
        """Where this rank's collectives take their tensors: CUDA under NCCL, else the CPU."""
        if dist.is_initialized() and dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    # ---- the split of a minibatch -----------------------------------------------------------------
    def bounds(self, n: int) -> list[tuple[int, int]]:
        """Rows [start, stop) of each rank in a minibatch of ``n`` rows: contiguous, sizes differing by <= 1."""
        base, extra = divmod(n, self.world_size)
        stops = [(k + 1) * base + min(k + 1, extra) for k in range(self.world_size)]
        return [(stop - base - (k < extra), stop) for k, stop in enumerate(stops)]

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's part of minibatch ``idx`` int64 (B,) (possibly empty when B < world size)."""
        start, stop = self.bounds(len(idx))[self.rank]
        return idx[start:stop]

    def gather_rows(self, n: int, *local: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The whole minibatch of ``n`` rows from each rank's shard: ``local`` float tensors (b, ...) of this rank's
        rows (`shard`) -> (n, ...) each, in minibatch order. This rank's rows are ``local`` itself (its gradient
        flows); the others' come without gradient."""
        sizes = [stop - start for start, stop in self.bounds(n)]
        widths = [math.prod(t.shape[1:]) for t in local]
        pairs = zip(local, widths, strict=True)
        flat = torch.cat([t.detach().reshape(len(t), w).to(local[0].dtype) for t, w in pairs], 1)  # (b, sum widths)
        padded = flat.new_zeros(max(sizes), sum(widths))
        padded[: len(flat)] = flat
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        with self._collective("all_gather of the minibatch's log-probs"):
            dist.all_gather(parts, padded)
        received = [p[:size] for p, size in zip(parts, sizes, strict=True)]  # (rows of rank k, sum widths)
        out, lo = [], 0
        for t, w in zip(local, widths, strict=True):
            rows = [t if k == self.rank else x[:, lo : lo + w].reshape(len(x), *t.shape[1:]).to(t.dtype)
                    for k, x in enumerate(received)]
            out.append(torch.cat(rows))
            lo += w
        return tuple(out)

    # ---- gradients and state ----------------------------------------------------------------------
    def backward(self, loss: torch.Tensor, params: Iterable[torch.Tensor]) -> None:
        """Backward of this rank's part of ``loss``, then each gradient summed over the ranks: the gradient of
        the whole minibatch. A parameter no rank gave a gradient keeps None (as in one process). Sharded (FSDP):
        the backward itself reduce-scatters the sums, and every rank must run it (each forwards a row at least)."""
        if self.sharded:
            with self._collective("reduce-scatter of the gradients"):
                loss.backward()
            return
        params = list(params)
        if loss.requires_grad:  # an empty shard contributes nothing
            loss.backward()
        for bucket in _buckets(params):
            grads = [p.grad.reshape(-1) if p.grad is not None else p.new_zeros(p.numel()) for p in bucket]
            present = torch.tensor([p.grad is not None for p in bucket], dtype=grads[0].dtype, device=grads[0].device)
            flat = torch.cat([*grads, present])
            with self._collective("all_reduce of the gradients"):
                dist.all_reduce(flat)
            at = 0
            for p, has in zip(bucket, flat[-len(bucket):].tolist(), strict=True):
                p.grad = flat[at : at + p.numel()].view_as(p) if has else None
                at += p.numel()

    def clip_grad_norm(self, params: Iterable[torch.Tensor], max_norm: float) -> torch.Tensor:
        """Clip the gradients of ``params`` (after `backward`) to the global norm ``max_norm``; returns the norm
        before clipping, the same on every rank. Sharded: summed over the ranks' shards."""
        if not self.sharded:
            return torch.nn.utils.clip_grad_norm_(list(params), max_norm)
        from vla_rl.distributed.fsdp import clip_grad_norm

        with self._collective("all_reduce of the gradient norm"):
            return clip_grad_norm(list(params), max_norm)

    def begin_update(self, gen: torch.Generator, *rollout: torch.Tensor) -> None:
        """Check that every rank holds the same rollout (a fingerprint of its tensors ``rollout``: rows and
        sums), then set ``gen`` to rank 0's state (every rank then draws the same minibatches).

        Raises:
            ValueError: on every rank, when the ranks' rollouts differ.
        """
        mine = torch.tensor([float(len(rollout[0]))] + [float(t.double().sum()) for t in rollout],
                            dtype=torch.float64, device=self.device)
        every = [torch.empty_like(mine) for _ in range(self.world_size)]
        with self._collective("all_gather of the rollouts' fingerprints"):
            dist.all_gather(every, mine)
        differ = [k for k, f in enumerate(every) if not torch.equal(f, every[0])]
        if differ:
            raise ValueError(f"data-parallel update: ranks {differ} hold another rollout than rank 0 (rows and sums "
                             f"{[f.tolist() for f in every]}); every rank must update on the same global batch")
        self.broadcast_generator(gen)

    def broadcast_generator(self, gen: torch.Generator) -> None:
        """Set ``gen`` to rank 0's state (every rank then draws the same minibatches)."""
        state = gen.get_state().to(self.device)  # a byte tensor; NCCL sends CUDA tensors only
        with self._collective("broadcast of the generator"):
            dist.broadcast(state, 0)
        gen.set_state(state.cpu())

    @torch.no_grad()
    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's ``module``."""
        with self._collective("broadcast of the parameters"):
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, 0)


def _buckets(params: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    bucket: list[torch.Tensor] = []
    size = 0
    for p in params:
        if bucket and size + p.numel() > BUCKET_ELEMENTS:
            yield bucket
            bucket, size = [], 0
        bucket.append(p)
        size += p.numel()
    if bucket:
        yield bucket


# ---- launching ranks on this machine --------------------------------------------------------------------------
def free_tcp_address(host: str = "127.0.0.1") -> str:
    """``tcp://host:port`` with a port free now (for rank 0 to listen on)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return f"tcp://{host}:{s.getsockname()[1]}"


def _rank_main(rank: int, world_size: int, init_method: str, backend: str | None, timeout_s: float,
               fn: Callable[..., Any], args: tuple, results: Any) -> None:
    dp = DataParallel.init(rank, world_size, init_method, backend, timeout_s)
    try:
        # plain pickle: torch would pass tensors as shared-memory handles that die with this process
        results.put((rank, True, pickle.dumps(fn(dp, *args))))
    except BaseException as e:  # the parent reports every rank's outcome
        results.put((rank, False, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}"))
    finally:
        dp.close()


def run_data_parallel(fn: Callable[..., Any], world_size: int, *args: Any, backend: str | None = None,
                      timeout_s: float = 60.0, deadline_s: float = 600.0) -> list[Any]:
    """Run ``fn(dp, *args)`` in ``world_size`` fresh processes (spawned: ``fn`` and ``args`` must pickle), each in
    the process group as rank ``dp.rank``; returns their results by rank. ``timeout_s``: of each collective;
    ``deadline_s``: of the whole run.

    Raises:
        DataParallelFailed: a rank raised (e.g. `LearnerRankLost`), died, or the deadline passed; the message
            gives every rank's outcome.
    """
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    address = free_tcp_address()
    procs = [ctx.Process(target=_rank_main, args=(k, world_size, address, backend, timeout_s, fn, args, results),
                         daemon=True) for k in range(world_size)]
    for p in procs:
        p.start()
    outcome: dict[int, tuple[bool, Any]] = {}
    end = time.monotonic() + deadline_s
    while len(outcome) < world_size and time.monotonic() < end:
        try:
            rank, ok, value = results.get(timeout=0.2)
            outcome[rank] = (ok, pickle.loads(value) if ok else value)
        except queue.Empty:
            if all(not p.is_alive() for p in procs) and results.empty():
                break
    for p in procs:
        p.join(timeout=max(0.0, end - time.monotonic()) if len(outcome) == world_size else 1.0)
        if p.is_alive():
            p.kill()
            p.join()
    if len(outcome) == world_size and all(ok for ok, _ in outcome.values()):
        return [outcome[k][1] for k in range(world_size)]
    lines = []
    for k, p in enumerate(procs):
        if k in outcome:
            lines.append(f"rank {k}: " + ("ok" if outcome[k][0] else outcome[k][1]))
        else:
            code = p.exitcode
            lines.append(f"rank {k}: " + (f"died (exit code {code})" if code is not None and code != 0 else
                                          f"no result within deadline_s={deadline_s:g} (exit code {code})"))
    raise DataParallelFailed(f"data-parallel update over {world_size} ranks failed (pid {os.getpid()}):\n"
                             + "\n".join(lines))
