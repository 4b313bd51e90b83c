"""How a command asks for parallel envs: `EnvConfig`, and `make_vector_env` that starts them."""

from __future__ import annotations

from functools import partial
from typing import Any

from pydantic import Field, field_validator

from vla_rl.config import Config
from vla_rl.envs.contract import CAMERAS, VectorEnv
from vla_rl.envs.registration import check_task_id, make_env
from vla_rl.registry import resolve_entry_point

# Short names `EnvConfig.vector_env` accepts for an entry point.
VECTOR_ENV_ALIASES = {"maniskill-batched": "sims.maniskill.batched:ManiSkillBatchedVectorEnv"}


class EnvConfig(Config):
    """How many parallel envs and what they render (the task is chosen by the command)."""

    num_envs: int = Field(8, ge=1, le=4096, description="parallel environments")
    num_workers: int | None = Field(None, ge=1, description="worker processes (default: min(envs, cores))")
    image_size: int = Field(128, ge=16, le=1024, description="camera image side, pixels")
    cameras: tuple[str, ...] = Field(CAMERAS, description="cameras to render")
    step_timeout_s: float = Field(30.0, gt=0, description="a worker silent this long is restarted")
    vector_env: str = Field("sims.vector:SubprocVectorEnv", description="entry point of the vector env class: "
                            "built from picklable env factories, as Gymnasium's AsyncVectorEnv(env_fns); or "
                            "'maniskill-batched' (ManiSkill's GPU-batched simulation, one process)")
    vector_env_options: dict[str, Any] = Field(default_factory=dict, description="further keyword arguments of "
                                               "that class (RayVectorEnv: address, actor_cpus, resources)")

    @field_validator("vector_env")
    @classmethod
    def _expand_alias(cls, v: str) -> str:
        return VECTOR_ENV_ALIASES.get(v, v)

    @field_validator("cameras")
    @classmethod
    def _known_cameras(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in v if c not in CAMERAS]
        if unknown or not v:
            raise ValueError(f"unknown cameras {unknown}; valid: {', '.join(CAMERAS)} (at least one)")
        return v

    def for_policy(self, policy_config: Any) -> EnvConfig:
        """These settings, rendering the cameras a VLA policy reads at the resolution it was trained on."""
        return self.model_copy(update={"image_size": policy_config.render_size,
                                       "cameras": tuple(policy_config.cameras)})


def make_vector_env(cfg: EnvConfig, task: str) -> VectorEnv:
    """Start ``cfg.num_envs`` envs of ``task`` (a registered id) in the vector env ``cfg.vector_env``."""
    check_task_id(task)  # before any worker starts
    factory = partial(make_env, task, image_size=cfg.image_size, cameras=tuple(cfg.cameras))
    vector_cls = resolve_entry_point(cfg.vector_env)
    return vector_cls([factory] * cfg.num_envs, num_workers=cfg.num_workers, step_timeout_s=cfg.step_timeout_s,
                      name=task, **cfg.vector_env_options)
