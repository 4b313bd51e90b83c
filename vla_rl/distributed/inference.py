"""Rollout inference on Ray actors: the policy acts where the GPUs are while the env actors simulate on CPU nodes.

`RemotePolicy` stands in for the driver's policy in the one rollout loop (`collect_rollouts`): it reads the driver's
copy for everything but acting (config, tokenizer, processor) and sends each chunk's batch to the inference actors
(`InferenceActor`, ``distributed.inference_actors``, each asking for ``inference_cpus``, ``inference_gpus`` and
``inference_resources``).

Weights. The driver publishes the policy's weights to the object store after every update with their version (the
number of updates behind them, `vla_rl.distributed.weights`); every act call carries the publication the iteration
needs, an actor holding another version loads it from the store first and checks the version before acting, so a
rollout never runs on stale weights.

Sampling. One actor gets the trainer's generator state with each call and returns it advanced, so its samples are
the ones the driver would draw with the same weights (on the CPU: equal, tested). With several actors the rows of a
call are split into contiguous slices, one per actor, each sampled with a generator seeded from a draw of the
trainer's generator: deterministic for a fixed number of actors, but other samples than one actor's.

Faults. An actor that dies (killed, out of memory, its node lost) or does not answer within
``inference_timeout_s`` is replaced by a fresh one, which loads the current publication, and the call is repeated
with the same generator state: the rollout continues with the samples it would have had (``restarts`` counts
them, logged as ``perf/inference_restarts``). After ``inference_retries`` failed repeats of one call the run stops
with `InferenceFailed`.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

import torch

from vla_rl.distributed.cluster import connect
from vla_rl.distributed.weights import InferenceWeights, PublishedWeights, StaleWeights

logger = logging.getLogger(__name__)


class InferenceFailed(RuntimeError):
    """An act call failed on fresh inference actors more times than ``distributed.inference_retries`` allows."""


class InferenceActor:
    """One inference actor: a copy of the policy on this actor's GPU (CPU without one), acting on the weights of
    the publication each call names."""

    def __init__(self, policy: torch.nn.Module, threads: int, name: str, dtype: str = "float32") -> None:
        import ray

        if threads:
            torch.set_num_threads(threads)
        on_gpu = bool(ray.get_gpu_ids()) and torch.cuda.is_available()
        self.policy = policy.to("cuda" if on_gpu else "cpu").eval()
        self.dtype = getattr(torch, dtype)  # the run's model.dtype: its forward passes autocast to it
        self.weights = InferenceWeights(self.policy, -1, who=name)  # nothing published held yet

    def device(self) -> tuple[str, int, str]:
        """Where the policy acts: its device, this actor's pid and its node's id."""
        import ray

        return str(next(self.policy.parameters()).device), os.getpid(), ray.get_runtime_context().get_node_id()

    def rss_mb(self) -> float | None:
        """This actor's resident set size, MB."""
        from vla_rl.distributed.ray_env import rss_mb

        return rss_mb()

    def act(self, published: PublishedWeights, batch: Any, kwargs: dict[str, Any], gen_state: torch.Tensor | None
            ) -> tuple[Any, torch.Tensor | None]:
        """``policy.act(batch, **kwargs)`` on the weights of ``published`` (loaded first if another version is
        held), sampling with a generator in ``gen_state`` (None: none); returns the `ActOutput` (on the CPU) and
        the generator's state after it."""
        if self.weights.version != published.version:
            self.weights.load(published)
        self.weights.require(published.version)
        gen = None
        if gen_state is not None:
            gen = torch.Generator()
            gen.set_state(gen_state)
        device = next(self.policy.parameters()).device.type
        with torch.autocast(device, dtype=self.dtype, enabled=self.dtype != torch.float32):
            out = self.policy.act(batch, generator=gen, **kwargs)
        return out, None if gen is None else gen.get_state()


class RemotePolicy:
    """The driver's ``policy`` acting through inference actors (see the module docstring)."""

    def __init__(self, policy: torch.nn.Module, dist: Any, threads: int | None = None, dtype: str = "float32") -> None:
        self.local, self.dist, self.dtype = policy, dist, dtype
        self.ray = connect(dist.address)
        self.threads = threads or torch.get_num_threads()
        self.actors: list[Any] = []
        self.published: PublishedWeights | None = None
        self.restarts = 0  # actors replaced over the run
        self._policy_ref = None

    def __getattr__(self, name: str) -> Any:  # config, action_tokenizer, processor, training, eval, train ...
        return getattr(self.local, name)

    def use(self, published: PublishedWeights) -> None:
        """Act with ``published`` from the next call (the actors load it on their next call)."""
        self.published = published

    def require(self, version: int) -> None:
        """Check before a rollout that the weights it will act with are ``version``.

        Raises:
            StaleWeights: the latest publication handed to `use` is another version (or there is none).
        """
        held = -1 if self.published is None else self.published.version
        if held != version:
            raise StaleWeights(f"the inference actors would act with weights version {held} but iteration {version}'s "
                               f"rollouts need version {version}: publish the update's weights (RemotePolicy.use) "
                               "before rolling out")

    def start(self) -> None:
        """Start the actors that are missing (each asks for inference_cpus / inference_gpus)."""
        while len(self.actors) < self.dist.inference_actors:
            self.actors.append(self._new_actor(len(self.actors)))

    def _new_actor(self, k: int) -> Any:
        ray, d = self.ray, self.dist
        if self._policy_ref is None:  # the architecture, once (a CPU copy); every publication brings the weights
            self._policy_ref = ray.put(copy.deepcopy(self.local).cpu())
        remote = ray.remote(InferenceActor).options(num_cpus=d.inference_cpus, num_gpus=d.inference_gpus,
                                                    resources=dict(d.inference_resources), max_restarts=0,
                                                    max_concurrency=1)
        actor = remote.remote(self._policy_ref, self.threads, f"inference actor {k}", self.dtype)
        try:
            ray.get(actor.__ray_ready__.remote(), timeout=d.inference_timeout_s)
        except ray.exceptions.GetTimeoutError:
            ray.kill(actor, no_restart=True)
            raise InferenceFailed(
                f"inference actor {k} did not start within {d.inference_timeout_s:.0f} s: no node has room for its "
                f"request ({d.inference_cpus} CPUs, {d.inference_gpus} GPUs, resources {dict(d.inference_resources)}; "
                f"free now: {ray.available_resources()}). Lower distributed.inference_cpus / inference_gpus, give the "
                "env actors less (actor_cpus), or add a node that has it") from None
        return actor

    def devices(self) -> list[tuple[str, int, str]]:
        """Each actor's (device, pid, node id)."""
        self.start()
        return self.ray.get([a.device.remote() for a in self.actors], timeout=self.dist.inference_timeout_s)

    def rss_mb_max(self) -> float | None:
        """The largest resident set size of the actors, MB (None: none started, or none could say)."""
        if not self.actors:
            return None
        sizes = self.ray.get([a.rss_mb.remote() for a in self.actors], timeout=self.dist.inference_timeout_s)
        return max((s for s in sizes if s is not None), default=None)

    def act(self, batch: Any, generator: torch.Generator | None = None, **kwargs: Any) -> Any:
        """The driver policy's ``act(batch, generator=, **kwargs)``, computed by the inference actors; ``generator``
        advances as the actors sampled."""
        if self.published is None:
            raise StaleWeights("no weights published to the inference actors yet: RemotePolicy.use first")
        n = len(self.actors) if self.actors else self.dist.inference_actors
        rows = len(batch)
        if n == 1 or rows < 2:
            state = None if generator is None else generator.get_state()
            out, state = self._call(0, batch, kwargs, state)
            if generator is not None:
                generator.set_state(state)
            return out
        return self._act_split(batch, generator, kwargs, min(n, rows))

    def _act_split(self, batch: Any, generator: torch.Generator | None, kwargs: dict[str, Any], n: int) -> Any:
        """One contiguous slice of the rows per actor, each sampled with a seed drawn from ``generator``."""
        bounds = torch.linspace(0, len(batch), n + 1).round().long().tolist()
        seeds = torch.randint(2**62, (n,), generator=generator).tolist()
        states = [torch.Generator().manual_seed(s).get_state() for s in seeds]
        quantiles = kwargs.pop("quantiles", None)
        parts = []
        for k in range(n):  # submitted together, gathered in order (each call retried alone if its actor is lost)
            sl = slice(bounds[k], bounds[k + 1])
            kw = kwargs | {"quantiles": None if quantiles is None else quantiles[sl]}
            parts.append((k, batch.index(sl), kw, states[k]))
        refs = [self._submit(k, b, kw, st) for k, b, kw, st in parts]
        outs = [self._complete(ref, *part) for ref, part in zip(refs, parts, strict=True)]
        return _concat(outs)

    def _submit(self, k: int, batch: Any, kwargs: dict[str, Any], state: torch.Tensor | None) -> Any:
        self.start()
        return self.actors[k].act.remote(self.published, batch, kwargs, state)

    def _call(self, k: int, batch: Any, kwargs: dict[str, Any], state: torch.Tensor | None) -> tuple[Any, Any]:
        return self._complete(self._submit(k, batch, kwargs, state), k, batch, kwargs, state, whole=True)

    def _complete(self, ref: Any, k: int, batch: Any, kwargs: dict[str, Any], state: torch.Tensor | None,
                  whole: bool = False) -> Any:
        """The result of call ``ref`` to actor ``k``; after a lost actor, the same call on its replacement."""
        ray = self.ray
        errors: list[str] = []
        for attempt in range(self.dist.inference_retries + 1):
            if attempt:
                ref = self._submit(k, batch, kwargs, state)
            try:
                out, new_state = ray.get(ref, timeout=self.dist.inference_timeout_s)
                return (out, new_state) if whole else out
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
                errors.append(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                logger.warning("inference actor %d lost (%s): replaced, the call repeated", k, errors[-1])
                self._replace(k)
                self.restarts += 1
            except ray.exceptions.RayTaskError as e:
                raise e.as_instanceof_cause() from None
        raise InferenceFailed(f"an act call failed on {self.dist.inference_retries + 1} inference actors "
                              f"(distributed.inference_retries={self.dist.inference_retries}); last: {errors[-1]}")

    def _replace(self, k: int) -> None:
        """Kill actor ``k`` (it may be gone already) and start a fresh one in its place."""
        self.ray.kill(self.actors[k], no_restart=True)
        self.actors[k] = self._new_actor(k)

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a, no_restart=True)
        self.actors = []


def _concat(outs: list[Any]) -> Any:
    """Rows of several `ActOutput`-like dataclasses, concatenated field by field (tensors and arrays)."""
    import dataclasses

    import numpy as np

    fields = {}
    for f in dataclasses.fields(outs[0]):
        vals = [getattr(o, f.name) for o in outs]
        fields[f.name] = torch.cat(vals) if isinstance(vals[0], torch.Tensor) else np.concatenate(vals)
    return type(outs[0])(**fields)
