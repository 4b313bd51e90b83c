"""LIBERO demo files (robomimic HDF5 in LIBERO's layout) -> LeRobot datasets in the env's conventions: image
orientation by the file's convention, no-ops dropped, each action paired with the observation before it, the
gripper sign checked; and, with the libero extra, a file recorded the way LIBERO's create_dataset.py records
(LIBERO's own env, camera observations on) imports into exactly what LiberoEnv shows the policy."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from sims.libero.demos import gripper_sign, import_libero, noop_count, orient
from vla_rl.availability import is_available
from vla_rl.data import DatasetError
from vla_rl.data.lerobot import read_lerobot

needs_libero = pytest.mark.skipif(not is_available("libero"), reason="the libero extra is not installed "
                                  "(make install-libero)")


def write_libero_file(path, demos, convention="opengl", instruction="put the bowl on the plate"):
    """``demos``: list of dicts with actions (T, 7), agentview / wrist uint8 (T, S, S, 3) and ee_pos, ee_ori,
    gripper_states, written under LIBERO's key names and attributes."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"problem_name": "libero_tabletop_manipulation",
                                                 "domain_name": "x", "language_instruction": instruction})
        data.attrs["macros_image_convention"] = convention
        for i, d in enumerate(demos):
            g = data.create_group(f"demo_{i}")
            g["actions"] = d["actions"]
            obs = g.create_group("obs")
            obs["agentview_rgb"], obs["eye_in_hand_rgb"] = d["agentview"], d["wrist"]
            for k in ("ee_pos", "ee_ori", "gripper_states"):
                obs[k] = d[k]
            obs["ee_states"] = np.concatenate([d["ee_pos"], d["ee_ori"]], axis=1)
            obs["joint_states"] = np.zeros((len(d["actions"]), 7))
            dones = np.zeros(len(d["actions"]), np.uint8)
            dones[-1] = 1
            g["dones"] = dones
            g.attrs["num_samples"] = len(d["actions"])


def synthetic_demo(n=8, size=16, seed=0):
    """A demo whose fingers close under +1 and open under -1; steps 3 and 4 hold still (4: same gripper)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (n, 7))
    a[:, 6] = np.where(np.arange(n) < n // 2, -1.0, 1.0)
    a[3:5, :6] = 0.0
    a[3, 6] = a[2, 6]  # a no-op (still, gripper unchanged)
    a[4, 6] = 1.0  # still but closing: kept
    a[5, 6] = 1.0
    opening = np.clip(0.08 - 0.02 * np.cumsum(a[:, 6] > 0), 0.01, 0.08)  # after each step's action
    return {"actions": a, "agentview": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
            "wrist": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
            "ee_pos": rng.standard_normal((n, 3)), "ee_ori": rng.standard_normal((n, 3)),
            "gripper_states": np.stack([opening / 2, -opening / 2], 1)}


@pytest.mark.parametrize("convention", ["opengl", "opencv"])
def test_import_orients_pairs_and_drops_noops(tmp_path, convention):
    demos = [synthetic_demo(seed=0), synthetic_demo(seed=1)]
    write_libero_file(tmp_path / "put_the_bowl_on_the_plate_demo.hdf5", demos, convention)
    (row,) = import_libero(tmp_path, tmp_path / "out")
    assert row["episodes"] == 2 and row["noops_dropped"] == 2 == noop_count(row["file"])
    assert row["gripper_sign"] < 0
    data = read_lerobot(row["out"])
    d = demos[1]
    ep = data[1]
    # action t (t >= 1) with row t-1's observation; action 3 is a no-op: dropped with its observation (row 2)
    keep = [1, 2, 4, 5, 6, 7]
    np.testing.assert_array_equal(ep.action, d["actions"][keep].astype(np.float32))
    rows = [k - 1 for k in keep]
    # the env's frame is robosuite's render rotated 180 degrees: opengl rows are the render, opencv rows flipped
    render = d["wrist"][rows] if convention == "opengl" else d["wrist"][rows][:, ::-1]
    np.testing.assert_array_equal(ep.frames["wrist"], render[:, ::-1, ::-1])
    want_state = np.concatenate([d["ee_pos"], d["ee_ori"], d["gripper_states"]], 1)[rows].astype(np.float32)
    np.testing.assert_array_equal(ep.state, want_state)
    assert ep.step_success.tolist() == [False] * 5 + [True] and ep.instruction == "put the bowl on the plate"
    assert data.info["vla_rl"]["libero"]["image_convention"] == convention


def test_flipped_gripper_column_is_refused(tmp_path):
    d = synthetic_demo()
    d["actions"][:, 6] *= -1
    write_libero_file(tmp_path / "x_demo.hdf5", [d])
    assert gripper_sign(tmp_path / "x_demo.hdf5") > 0
    with pytest.raises(DatasetError, match=r"x_demo.hdf5: the fingers open under gripper command \+1"):
        import_libero(tmp_path / "x_demo.hdf5", tmp_path / "out")
    (row,) = import_libero(tmp_path / "x_demo.hdf5", tmp_path / "out", check_gripper=False)
    assert row["episodes"] == 1


def test_orient_rejects_unknown_convention():
    with pytest.raises(ValueError, match="unknown image convention 'directx'"):
        orient(np.zeros((1, 2, 2, 3), np.uint8), "directx")


def record_like_create_dataset(env, ref, actions):
    """Step LIBERO's own env (camera observations on) and our env through ``actions`` from the same state: the
    rows LIBERO's create_dataset.py would store (each action with the observation its step returned) and our
    env's observation before each action."""
    from robosuite.utils.transform_utils import quat2axisangle

    from sims.libero.env import placement_seed
    from vla_rl.splits import split_seeds

    seed = split_seeds("test", 1)[0]  # official init state 0
    obs, _ = env.reset(seed=seed)
    ref.seed(placement_seed(seed))  # the same fixture placement
    ref.reset()
    ref.set_init_state(env.init_states[0])
    for _ in range(env.settle_steps):
        ref.step(np.array([0, 0, 0, 0, 0, 0, -1.0]))
    assert np.array_equal(env.get_state(), ref.get_sim_state())
    rows = {k: [] for k in ("agentview", "wrist", "ee_pos", "ee_ori", "gripper_states")}
    ours = []
    for a in actions:
        ours.append(obs)
        raw, *_ = ref.step(a.astype(np.float64))
        obs, *_ = env.step(a)
        rows["agentview"].append(raw["agentview_image"])
        rows["wrist"].append(raw["robot0_eye_in_hand_image"])
        rows["ee_pos"].append(raw["robot0_eef_pos"])
        rows["ee_ori"].append(quat2axisangle(raw["robot0_eef_quat"]))
        rows["gripper_states"].append(raw["robot0_gripper_qpos"])
    return {k: np.stack(v) for k, v in rows.items()} | {"actions": actions}, ours


@needs_libero
def test_a_file_recorded_as_libero_records_imports_into_what_the_env_shows(tmp_path):
    import robosuite.macros

    from sims.libero.check import reference_env
    from sims.libero.env import LiberoEnv

    env = LiberoEnv("spatial", 0, image_size=32)
    ref = reference_env(env)
    try:
        rng = np.random.default_rng(0)
        actions = np.zeros((10, 7), np.float32)
        actions[:, :3] = rng.uniform(-1, 1, (10, 3))
        actions[:, 6] = np.where(np.arange(10) < 5, -1, 1)
        actions[[3, 8], :6] = 0  # still, gripper unchanged: no-ops
        demo, ours = record_like_create_dataset(env, ref, actions)
    finally:
        ref.close()
        env.close()
    src = tmp_path / "libero_spatial"
    src.mkdir()
    write_libero_file(src / f"{env.task.name}_demo.hdf5", [demo], robosuite.macros.IMAGE_CONVENTION, "anything")
    (row,) = import_libero(src, tmp_path / "out")
    assert row["env_task"] == "libero/spatial/0" and row["noops_dropped"] == 2
    ep = read_lerobot(row["out"])[0]
    assert ep.instruction == env.instruction  # the env's prompt, not the file's
    kept = [1, 2, 4, 5, 6, 7, 9]
    np.testing.assert_array_equal(ep.action, actions[kept])
    for i, t in enumerate(kept):
        np.testing.assert_allclose(ep.state[i], ours[t]["state"], atol=1e-6)  # the env's proprio before action t
        for c in ("agentview", "wrist"):
            gap = np.abs(ep.frames[c][i].astype(int) - ours[t][c]).mean()
            upside_down = np.abs(ep.frames[c][i][::-1, ::-1].astype(int) - ours[t][c]).mean()
            # robosuite samples a step's camera observation one physics substep (of 25) before the step ends
            assert gap < 4 and upside_down > 10 * gap + 10, (c, t, gap, upside_down)
    stale = np.abs(np.stack([ours[t]["state"] for t in kept]) - demo_state(demo)[kept]).max()
    assert stale > 1e-3  # pairing as stored would be one step late
    assert ep.step_success.tolist() == [False] * (len(kept) - 1) + [True]  # the file's done on its last row


def demo_state(demo):
    return np.concatenate([demo["ee_pos"], demo["ee_ori"], demo["gripper_states"]], 1).astype(np.float32)
