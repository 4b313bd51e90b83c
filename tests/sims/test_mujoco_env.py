"""The single MuJoCo env: Gymnasium's checker, rendering, control, determinism, bad input."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from vla_rl.envs import make_env, robot_task_ids


@pytest.fixture
def reach():
    env = make_env("mujoco/Reach-v1", image_size=64)
    yield env
    env.close()


@pytest.mark.parametrize("task_id", robot_task_ids("mujoco"))
def test_every_task_passes_the_gymnasium_checker(task_id):
    env = make_env(task_id, image_size=32)
    try:
        check_env(env, skip_render_check=False)
        obs, info = env.reset(seed=0)
        assert info["instruction"] and isinstance(info["instruction"], str)
        assert obs["state"].shape == (8,) and obs["state"].dtype == np.float32
    finally:
        env.close()


def test_images_non_blank_and_change_when_arm_moves(reach):
    obs0, _ = reach.reset(seed=1)
    for cam in ("agentview", "wrist"):
        img = obs0[cam]
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert img.std() > 10, f"{cam} looks blank"
    action = np.array([0.0, 1.0, 1.0, 0, 0, 0, -1], dtype=np.float32)
    obs1 = obs0
    for _ in range(5):
        obs1, *_ = reach.step(action)
    for cam in ("agentview", "wrist"):
        diff = np.abs(obs1[cam].astype(int) - obs0[cam].astype(int)).mean()
        assert diff > 1.0, f"{cam} did not change when the arm moved ({diff})"


def test_controller_tracks_end_effector_deltas_and_gripper(reach):
    obs, _ = reach.reset(seed=2)
    start = obs["state"][:3].copy()
    for _ in range(10):  # +x at full speed: 0.02 m per step
        obs, *_ = reach.step(np.array([1, 0, 0, 0, 0, 0, 1], dtype=np.float32))
    moved = obs["state"][:3] - start
    assert 0.15 < moved[0] < 0.21 and abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01
    assert obs["state"][6:].max() < 0.005, "gripper should close on +1"
    tilt = np.array([0, 0, 0, 1, 0, 0, 1], dtype=np.float32)
    rot0 = obs["state"][3:6].copy()
    for _ in range(3):
        obs, *_ = reach.step(tilt)
    assert np.linalg.norm(obs["state"][3:6] - rot0) > 0.1, "rotation actions must rotate the gripper"


def test_same_seed_same_states_and_images():
    runs = []
    for _ in range(2):
        env = make_env("mujoco/Reach-v1", image_size=48)
        rng = np.random.default_rng(7)
        obs, _ = env.reset(seed=123)
        for _ in range(3):
            obs, *_ = env.step_chunk(rng.uniform(-1, 1, (4, 7)).astype(np.float32))
        runs.append((env.get_state(), obs))
        env.close()
    (s1, o1), (s2, o2) = runs
    np.testing.assert_array_equal(s1, s2)
    for k in o1:
        np.testing.assert_array_equal(o1[k], o2[k])


def test_different_seeds_different_initial_states(reach):
    reach.reset(seed=1)
    a = reach.get_state()
    reach.reset(seed=2)
    assert not np.array_equal(a, reach.get_state())


def test_step_chunk_runs_t_steps_and_stops_at_success(reach):
    reach.reset(seed=3)
    *_, info = reach.step_chunk(np.zeros((8, 7), dtype=np.float32))
    assert info["steps"] == 8 and reach.elapsed == 8
    reach.reset(seed=3)
    chunk = np.stack([reach.expert_action() for _ in range(1)] * 60)
    done, steps = False, 0
    while not done:
        obs, r, term, trunc, info = reach.step_chunk(np.stack([reach.expert_action()] * 4))
        steps += info["steps"]
        done = term or trunc
    assert term and r == 1.0 and info["success"] and not trunc
    assert chunk.shape == (60, 7)
    _, _, _, _, info = reach.step_chunk(np.zeros((4, 7), dtype=np.float32))
    assert info["steps"] == 0, "a finished episode must not keep stepping"


def test_truncation_is_not_termination(reach):
    reach.reset(seed=4)
    term = trunc = False
    while not (term or trunc):
        _, _, term, trunc, info = reach.step(np.array([0, 0, 1, 0, 0, 0, -1], dtype=np.float32))
    assert trunc and not term and not info["success"] and reach.elapsed == reach.max_steps


@pytest.mark.parametrize("bad", [np.full(7, np.nan), np.array([0, 0, np.inf, 0, 0, 0, 0]), np.zeros(6)])
def test_bad_actions_are_refused_clearly(reach, bad):
    reach.reset(seed=5)
    before = reach.get_state()
    with pytest.raises(ValueError, match="NaN or inf|shape"):
        reach.step(bad.astype(np.float32))
    np.testing.assert_array_equal(before, reach.get_state())


def test_out_of_range_actions_are_clipped(reach):
    reach.reset(seed=6)
    reach.step(np.array([50, 0, 0, 0, 0, 0, -1], dtype=np.float32))
    a = reach.get_state()
    reach.reset(seed=6)
    reach.step(np.array([1, 0, 0, 0, 0, 0, -1], dtype=np.float32))
    np.testing.assert_array_equal(a, reach.get_state())


def test_sims_of_one_scene_share_a_renderer_and_draw_their_own_model_and_state():
    """Two PickCube envs draw through one process renderer (one GL context), yet each image equals what a
    renderer of its own makes from its model and data, even after one model's colours change."""
    import mujoco

    from sims.mujoco.sim import shared_renderer

    a, b, other = make_env("mujoco/PickCube-v1", image_size=48), make_env("mujoco/PickCube-v1", image_size=48), \
        make_env("mujoco/Reach-v1", image_size=48)
    try:
        a.reset(seed=0)
        b.reset(seed=5)
        b.step(np.array([1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0], np.float32))
        b.sim.model.geom_rgba[:, :3] = b.sim.model.geom_rgba[:, :3][:, ::-1]  # b's colours only: RGB -> BGR
        own = {}
        for env in (a, b):
            with mujoco.Renderer(env.sim.model, 48, 48) as r:
                for cam in env.cameras:
                    r.update_scene(env.sim.data, camera=cam)
                    own[id(env), cam] = r.render()
        for env in (a, b):
            for cam in env.cameras:
                np.testing.assert_array_equal(env.sim.render(cam), own[id(env), cam])
        assert not np.array_equal(own[id(a), "agentview"], own[id(b), "agentview"])
        assert shared_renderer(a.sim._scene_key, a.sim.model) is shared_renderer(b.sim._scene_key, b.sim.model)
        assert a.sim._scene_key != other.sim._scene_key  # another scene gets its own context
        with pytest.raises(KeyError, match="nope"):
            a.sim.render("nope")
    finally:
        for env in (a, b, other):
            env.close()
