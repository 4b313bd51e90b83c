"""The LIBERO backend against LIBERO's own env: one task per suite on its first two official init states (the
full sweep, 40 tasks x 5 states: bench/libero_sweep.py), the seed mapping, the specs, the vector env."""

from __future__ import annotations

import numpy as np
import pytest

from vla_rl.availability import is_available

if not is_available("libero"):
    pytest.skip("the libero extra is not installed (make install-libero)", allow_module_level=True)

from sims.libero.check import check_task  # noqa: E402
from sims.libero.env import NUM_INIT_STATES, SUITES, LiberoEnv, _libero, official_index  # noqa: E402
from vla_rl.envs import EnvConfig, env_spec, make_env, make_vector_env, robot_task_ids  # noqa: E402
from vla_rl.splits import split_seeds  # noqa: E402

SIZE = 32


@pytest.fixture(scope="module")
def spatial0():
    env = make_env("libero/spatial/0", image_size=SIZE)
    yield env
    env.close()


@pytest.mark.parametrize("suite, task", [("spatial", 0), ("object", 3), ("goal", 5), ("10", 7)])
def test_matches_libero_on_official_init_states(suite, task):
    rec = check_task(suite, task, [0, 1], image_size=SIZE, move_steps=2)
    for s in rec["states"]:
        assert all(s["state_equal"]), f"{rec['id']} state {s['index']}: MuJoCo state differs from LIBERO's"
        assert all(s["images_equal"]), f"{rec['id']} state {s['index']}: images differ from LIBERO's renders"
        assert all(s["success_equal"]), f"{rec['id']} state {s['index']}: success differs from LIBERO's"
        assert min(s["image_std"].values()) > 5, f"{rec['id']}: a blank camera {s['image_std']}"
        assert min(s["image_change"].values()) > 1, f"{rec['id']}: a camera did not change {s['image_change']}"
    assert rec["ok"]


def test_specs_cover_every_task_with_the_peers_step_limits():
    benchmarks = _libero("benchmark").get_benchmark_dict()
    for suite, (name, limit) in SUITES.items():
        ids = robot_task_ids(f"libero/{suite}")
        assert len(ids) == benchmarks[name]().get_num_tasks(), suite
        assert {env_spec(i).max_episode_steps for i in ids} == {limit}
    assert len(robot_task_ids("libero")) == 130


def test_conventions(spatial0):
    obs, info = spatial0.reset(seed=split_seeds("test", 1)[0])
    assert info["instruction"] == spatial0.task.language and spatial0.max_steps == 220
    assert obs["state"].shape == (8,) and obs["state"].dtype == np.float32
    assert obs["agentview"].shape == obs["wrist"].shape == (SIZE, SIZE, 3)
    raw = spatial0.libero_env().sim.render(camera_name="agentview", width=SIZE, height=SIZE)
    assert np.array_equal(obs["agentview"], raw[::-1, ::-1])  # rotated 180 degrees, as OpenVLA / SimpleVLA-RL
    fingers = obs["state"][6:]
    for _ in range(8):
        obs, *_ = spatial0.step(np.array([0, 0, 0, 0, 0, 0, 1], np.float32))  # +1: closed
    closed = obs["state"][6:]
    assert np.abs(closed).sum() < 0.5 * np.abs(fingers).sum(), (fingers, closed)
    z0 = obs["state"][2]
    obs, *_ = spatial0.step_chunk(np.tile([0, 0, 1, 0, 0, 0, -1], (4, 1)).astype(np.float32))
    assert obs["state"][2] > z0 + 0.02  # up by >2 cm in 4 steps (OSC: at most 5 cm per step)


def test_seed_mapping_official_and_sampled(spatial0):
    assert official_index(split_seeds("test", 1, start=7)[0]) == 7
    assert official_index(split_seeds("train", 1)[0]) is None and official_index(split_seeds("val", 1)[0]) is None
    with pytest.raises(ValueError, match="50 per task"):
        official_index(split_seeds("test", 1, start=NUM_INIT_STATES)[0])
    env = LiberoEnv("spatial", 0, image_size=SIZE, cameras=(), settle_steps=0)
    try:
        nq = env.libero_env().sim.model.nq
        official = env.init_states[:, 1:1 + nq]
        states = {}
        for seed in [*split_seeds("train", 2), split_seeds("val", 1)[0]]:
            env.reset(seed=seed)
            q = env.get_state()[1:1 + nq]
            env.reset(seed=seed)
            assert np.array_equal(env.get_state()[1:1 + nq], q), "a seed must give one initial state"
            gap = np.linalg.norm(official - q, axis=1).min()
            assert gap > 0.01, f"seed {seed} placed the objects {gap:.4f} from an official init state"
            states[seed] = q
        a, b, c = states.values()
        assert not np.allclose(a, b) and not np.allclose(a, c)
        env.reset(seed=split_seeds("test", 1, start=3)[0])
        assert np.array_equal(env.get_state()[1:1 + nq], official[3])  # before settling: the official state itself
    finally:
        env.close()


def test_through_the_vector_env():
    env = make_vector_env(EnvConfig(num_envs=2, num_workers=2, image_size=SIZE), "libero/object/0")
    try:
        obs, info = env.reset(seed=split_seeds("test", 2))
        assert obs["agentview"].shape == (2, SIZE, SIZE, 3) and obs["state"].shape == (2, 8)
        assert obs["agentview"].std() > 5 and not np.array_equal(obs["agentview"][0], obs["agentview"][1])
        assert info["instruction"] == ["pick up the alphabet soup and place it in the basket"] * 2
        before = obs["state"].copy()
        actions = np.tile([0, 0, 1, 0, 0, 0, -1], (2, 3, 1)).astype(np.float32)
        obs, reward, term, trunc, info = env.step_chunk(actions, active=np.array([True, False]))
        assert list(info["steps"]) == [3, 0] and not info["lost"].any()
        assert not info["success"].any() and not term.any() and not trunc.any()
        assert obs["state"][0, 2] > before[0, 2] + 0.02 and np.array_equal(obs["state"][1], before[1])
    finally:
        env.close()
