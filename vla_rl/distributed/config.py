"""The ``distributed`` section of a robot GRPO run: where its env workers run (this machine, or Ray actors)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from vla_rl.availability import is_available
from vla_rl.config import Config
from vla_rl.envs import EnvConfig

RAY_VECTOR_ENV = "vla_rl.distributed.ray_env:RayVectorEnv"
LOCAL_VECTOR_ENV = EnvConfig.model_fields["vector_env"].default


class DistributedConfig(Config):
    """Where the env workers run. The trainer is the same for both backends; only the vector env differs."""

    backend: Literal["local", "ray"] = Field("local", description="local: env worker processes on this machine "
                                             "(SubprocVectorEnv); ray: env workers as Ray actors (RayVectorEnv)")
    address: str | None = Field(None, description="ray: the cluster to join (host:port, or auto); None: start a "
                                "Ray instance on this machine")
    env_actors: int | None = Field(None, ge=1, description="ray: env actors per task, each holding a slice of the "
                                   "envs (default: env.num_workers, else min(envs, cores))")
    actor_cpus: float = Field(1.0, gt=0, description="ray: CPUs each env actor asks the cluster for")

    @model_validator(mode="after")
    def _ray_installed(self) -> DistributedConfig:
        if self.backend == "ray" and not is_available("ray"):
            raise ValueError("distributed.backend=ray needs Ray, which is not installed: pip install -e '.[ray]' "
                             "(or make install-ray)")
        return self

    def env_config(self, env: EnvConfig) -> EnvConfig:
        """``env`` with this backend's vector env (unchanged for local)."""
        if self.backend == "local":
            return env
        if env.vector_env != LOCAL_VECTOR_ENV:
            raise ValueError(f"distributed.backend=ray runs the envs in {RAY_VECTOR_ENV}; env.vector_env is "
                             f"{env.vector_env!r}: leave it at its default")
        return env.model_copy(update={
            "vector_env": RAY_VECTOR_ENV, "num_workers": self.env_actors or env.num_workers,
            "vector_env_options": {"address": self.address, "actor_cpus": self.actor_cpus,
                                   "resources": dict(self.actor_resources), "memory_mb": self.actor_memory_mb}})

    # ---- learner ranks as Ray actors, versioned weights (learner_actors.py, weights.py) ----
    learner_ranks: int = Field(1, ge=1, description="ray: data-parallel learner ranks, each a Ray actor (1: the "
                               "update runs in the driver, as with the local backend)")
    learner_cpus: float = Field(1.0, gt=0, description="ray: CPUs each learner actor asks the cluster for")
    learner_gpus: float = Field(0.0, ge=0, description="ray: GPUs each learner actor asks the cluster for (places "
                                "the ranks on GPU nodes; the update itself runs where the trainer puts the policy)")
    learner_retries: int = Field(2, ge=0, description="ray: times an iteration's update is retried on fresh learner "
                                 "actors after one was lost, before the run stops")
    learner_timeout_s: float = Field(120.0, gt=0, description="ray: seconds a learner collective (or the actors' "
                                     "start) may wait for a peer before the update counts as lost")
    learner_sharding: Literal["replicate", "fsdp"] = Field(
        "replicate", description="ray, learner_ranks >= 2: replicate: every rank holds the whole policy, its "
        "gradient and AdamW's moments (the gradient all-reduced); fsdp: each rank holds 1 / learner_ranks of them "
        "(PyTorch FSDP2, units of one LM layer / vision block; vla_rl.distributed.fsdp), for policies whose "
        "training state does not fit one GPU. The update is the same either way")

    @model_validator(mode="after")
    def _learner_ranks_need_ray(self) -> DistributedConfig:
        if self.learner_ranks > 1 and self.backend != "ray":
            raise ValueError(f"distributed.learner_ranks={self.learner_ranks} runs the ranks as Ray actors: set "
                             "distributed.backend=ray (or learner_ranks=1)")
        if self.learner_sharding == "fsdp" and self.learner_ranks < 2:
            raise ValueError(f"distributed.learner_sharding=fsdp shards the policy over the learner ranks, but "
                             f"learner_ranks={self.learner_ranks}: set distributed.learner_ranks to 2 or more (with "
                             "backend=ray), or learner_sharding=replicate")
        return self

    # ---- env actors' placement and memory (launch/ray_cluster.yaml, docs/cluster.md) ----
    actor_resources: dict[str, float] = Field(
        default_factory=dict, description="ray: custom resources each env actor asks for, so only the nodes that "
        "advertise them hold env actors (launch/ray_cluster.yaml's CPU workers advertise env_node: use "
        "{env_node: 1}); {}: any node with free CPUs")
    actor_memory_mb: int | None = Field(
        None, gt=0, description="ray: memory bound of each env actor in MB, asked of the scheduler (memory=); an "
        "actor whose resident set passes it is replaced and its episodes re-run, before the OOM killer; None: no "
        "bound (perf/env_actor_rss_mb_max shows what the actors use)")

    # ---- rollout inference on Ray actors (inference.py) ----
    inference_actors: int = Field(0, ge=0, description="ray: inference actors that compute the rollouts' actions, "
                                  "each with a copy of the policy on its GPU (or CPU), fed the weights of every "
                                  "update through the object store; 0: the driver infers")
    inference_cpus: float = Field(1.0, gt=0, description="ray: CPUs each inference actor asks the cluster for")
    inference_gpus: float = Field(0.0, ge=0, description="ray: GPUs each inference actor asks for (places it on a GPU "
                                  "node and makes it act there)")
    inference_resources: dict[str, float] = Field(default_factory=dict, description="ray: custom resources each "
                                                  "inference actor asks for, so only the nodes that advertise them "
                                                  "hold one; {}: any node with what it asks")
    inference_retries: int = Field(2, ge=0, description="ray: times an act call is repeated on a fresh inference "
                                   "actor after one was lost, before the run stops")
    inference_timeout_s: float = Field(300.0, gt=0, description="ray: seconds an act call (or an actor's start, "
                                       "which loads the policy) may take before its actor counts as lost")

    @model_validator(mode="after")
    def _inference_actors_need_ray(self) -> DistributedConfig:
        if self.inference_actors and self.backend != "ray":
            raise ValueError(f"distributed.inference_actors={self.inference_actors} runs inference on Ray actors: "
                             "set distributed.backend=ray (or inference_actors=0 to infer in the driver)")
        return self
