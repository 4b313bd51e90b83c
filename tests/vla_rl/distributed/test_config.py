"""The ``distributed`` section of a robot GRPO config: local by default, Ray's vector env with backend=ray, and the
errors at load (Ray missing, a vector env the backend would replace)."""

import pytest

from vla_rl.config import ConfigError, load_config
from vla_rl.distributed.config import RAY_VECTOR_ENV
from vla_rl.trainers.grpo import GRPOConfig, RobotBackend

BASE = ["init=x", "tasks=[mujoco/Reach-v1]", "env.num_envs=4"]


def test_local_is_the_default_and_leaves_the_env_config_alone():
    cfg = load_config(GRPOConfig, overrides=BASE)
    assert cfg.distributed.backend == "local"
    assert RobotBackend(cfg).env_cfg == cfg.env


def test_ray_runs_the_envs_in_ray_actors(monkeypatch):
    monkeypatch.setattr("vla_rl.distributed.config.is_available", lambda m: True)
    cfg = load_config(GRPOConfig, overrides=[*BASE, "distributed.backend=ray", "distributed.address=auto",
                                             "distributed.env_actors=2", "distributed.actor_cpus=0.5",
                                             "distributed.actor_resources={env_node: 1}",
                                             "distributed.actor_memory_mb=2048"])
    env = RobotBackend(cfg).env_cfg
    assert (env.vector_env, env.num_workers, env.num_envs) == (RAY_VECTOR_ENV, 2, 4)
    assert env.vector_env_options == {"address": "auto", "actor_cpus": 0.5, "resources": {"env_node": 1.0},
                                      "memory_mb": 2048}


def test_ray_missing_is_a_clear_error_at_load(monkeypatch):
    monkeypatch.setattr("vla_rl.distributed.config.is_available", lambda m: False)
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]' \(or make install-ray\)"):
        load_config(GRPOConfig, overrides=[*BASE, "distributed.backend=ray"])


def test_ray_refuses_another_vector_env(monkeypatch):
    monkeypatch.setattr("vla_rl.distributed.config.is_available", lambda m: True)
    with pytest.raises(ConfigError, match="leave it at its default"):
        load_config(GRPOConfig, overrides=[*BASE, "distributed.backend=ray", "env.vector_env=my.mod:Env"])
    with pytest.raises(ConfigError, match="distributed.backend"):
        load_config(GRPOConfig, overrides=[*BASE, "distributed.backend=slurm"])
