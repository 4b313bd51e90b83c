"""The env-spec registry: ids map to data (entry point, kwargs, step limit); `make_env` builds from it and
refuses what the entry point does not take."""

import pickle
from functools import partial

import numpy as np
import pytest

from vla_rl.envs import (
    ENVS,
    EnvSpec,
    check_task_id,
    env_instructions,
    env_spec,
    make_env,
    register_env,
    robot_task_ids,
    variant_id,
)
from vla_rl.registry import RegistryError


def test_every_spec_is_data_and_builds():
    for task_id in robot_task_ids("mujoco"):
        spec = env_spec(task_id)
        assert isinstance(spec, EnvSpec) and spec.id == task_id and ":" in spec.entry_point
        env = make_env(task_id, image_size=16, cameras=())
        try:
            assert env.max_steps == spec.max_episode_steps and env.task_id == task_id
            assert env.instructions and env.instructions == env_instructions(task_id)
        finally:
            env.close()


def test_a_misspelt_kwarg_is_refused_naming_the_valid_ones():
    with pytest.raises(TypeError) as e:
        make_env("mujoco/PickCube-v1", image_sise=32)
    msg = str(e.value)
    assert "'image_sise'" in msg and "mujoco/PickCube-v1" in msg and "image_size" in msg and "spread" in msg
    register_env("test/BadSpread-v1", "sims.mujoco.env:ArmEnv", 10, task="tasks.robot.reach:Reach", sprad=0.5)
    try:
        with pytest.raises(TypeError, match="'sprad'.*valid: .*spread"):  # a spec's own kwargs are checked too
            make_env("test/BadSpread-v1")
    finally:
        ENVS._entries.pop("test/BadSpread-v1")


def test_an_unknown_id_lists_and_suggests():
    with pytest.raises(RegistryError) as e:
        make_env("mujoco/PickCub-v1")
    assert "Did you mean 'mujoco/PickCube-v1'" in str(e.value) and "mujoco/Reach-v1" in str(e.value)
    with pytest.raises(RegistryError, match="already registered"):
        register_env("mujoco/Reach-v1", "sims.mujoco.env:ArmEnv")
    with pytest.raises(ValueError, match="package.module:Callable"):
        register_env("test/NoColon-v1", "sims.mujoco.env.ArmEnv")


def test_overrides_win_and_factories_pickle():
    env = make_env("mujoco/PickCubeNarrow-v2", max_episode_steps=7, spread=1.0, image_size=16)
    try:
        assert env.max_steps == 7 and env.spread == 1.0
    finally:
        env.close()
    factory = pickle.loads(pickle.dumps(partial(make_env, "mujoco/Reach-v1", image_size=16)))
    env = factory()
    try:
        assert env.task_id == "mujoco/Reach-v1" and env.image_size == 16
    finally:
        env.close()


def test_a_variant_id_updates_the_base_spec_without_registering_it():
    ids = ["mujoco/PickCube-v1", "mujoco/PickCube-v1@spread=1.0", "mujoco/PickCube-v1@spread=0.25,max_episode_steps=33"]
    envs = [make_env(i, image_size=32) for i in ids]
    try:
        states = []
        for env in envs:
            env.reset(seed=7)
            states.append(env.get_state())
        assert np.array_equal(states[0], states[1])  # the full range spelt out is the base task
        assert not np.allclose(states[0], states[2])  # a quarter of it starts elsewhere on the same seed
        assert envs[2].max_steps == 33 and envs[2].task_id == ids[2]  # records name the variant
    finally:
        for env in envs:
            env.close()
    assert env_spec("mujoco/PickCube-v1@spread=0.25").kwargs["spread"] == 0.25
    assert "mujoco/PickCube-v1@spread=0.25" not in robot_task_ids()
    with pytest.raises(ValueError, match="takes no argument 'sprad'; valid: .*spread"):
        check_task_id("mujoco/PickCube-v1@sprad=0.25")
    with pytest.raises(ValueError, match="is not key=value"):
        env_spec("mujoco/PickCube-v1@spread")


def test_variant_id_spells_what_env_spec_reads():
    pick = "mujoco/PickCube-v1"
    assert variant_id(pick, spread=0.25) == f"{pick}@spread=0.25"
    assert variant_id(f"{pick}@max_episode_steps=40", spread=0.25) == f"{pick}@max_episode_steps=40,spread=0.25"
    assert variant_id(pick) == pick
    spec = env_spec(variant_id(pick, spread=0.1, max_episode_steps=30))
    assert spec.kwargs["spread"] == 0.1 and spec.max_episode_steps == 30
