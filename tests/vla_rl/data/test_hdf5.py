"""robomimic / LIBERO HDF5 import: demo order, state layout, instruction lookup, errors, LeRobot export."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from vla_rl.data import DatasetError
from vla_rl.data.hdf5 import import_hdf5, noop_mask, quat_to_axis_angle, read_hdf5
from vla_rl.data.lerobot import read_lerobot


def _libero_file(path, make_frames, lengths=(4, 6, 5)):
    """LIBERO layout: problem_info JSON in data attrs; obs agentview_rgb, eye_in_hand_rgb, ee_pos, ee_ori,
    gripper_states; demo_10 must come after demo_2."""
    rng = np.random.default_rng(0)
    truth = {}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["problem_info"] = json.dumps({"problem_name": "libero_tabletop_manipulation",
                                                 "language_instruction": "put the bowl on the plate"})
        data.attrs["env_args"] = json.dumps({"env_name": "Libero_Tabletop_Manipulation"})
        for name, n in zip(("demo_10", "demo_0", "demo_2"), lengths, strict=True):
            g = data.create_group(name)
            obs = g.create_group("obs")
            d = {"agentview_rgb": make_frames(n, seed=n), "eye_in_hand_rgb": make_frames(n, seed=n + 1),
                 "ee_pos": rng.standard_normal((n, 3)), "ee_ori": rng.standard_normal((n, 3)),
                 "gripper_states": rng.standard_normal((n, 2)), "joint_states": rng.standard_normal((n, 7))}
            for k, v in d.items():
                obs.create_dataset(k, data=v)
            d["actions"] = rng.uniform(-1, 1, (n, 7))
            g.create_dataset("actions", data=d["actions"])
            dones = np.zeros(n, dtype=np.uint8)
            dones[-1] = 1
            g.create_dataset("dones", data=dones)
            g.attrs["num_samples"] = n
            truth[name] = d
    return truth


def test_libero_layout(tmp_path, make_frames):
    path = tmp_path / "libero_demo.hdf5"
    truth = _libero_file(path, make_frames)
    eps = list(read_hdf5(path))
    assert [len(e) for e in eps] == [6, 5, 4]  # demo_0, demo_2, demo_10
    for ep, name in zip(eps, ("demo_0", "demo_2", "demo_10"), strict=True):
        d = truth[name]
        assert ep.instruction == "put the bowl on the plate"
        assert ep.cameras == ("agentview", "wrist")
        np.testing.assert_array_equal(ep.frames["agentview"], d["agentview_rgb"])
        np.testing.assert_array_equal(ep.frames["wrist"], d["eye_in_hand_rgb"])
        want = np.concatenate([d["ee_pos"], d["ee_ori"], d["gripper_states"]], axis=1).astype(np.float32)
        np.testing.assert_array_equal(ep.state, want)
        assert ep.state.dtype == np.float32 and ep.state.shape == (len(ep), 8)
        np.testing.assert_array_equal(ep.action, d["actions"].astype(np.float32))
        assert ep.success and ep.step_success[-1] and not ep.step_success[:-1].any() and ep.seed is None


def test_rotate_images(tmp_path, make_frames):
    path = tmp_path / "libero_demo.hdf5"
    truth = _libero_file(path, make_frames)
    ep = next(read_hdf5(path, rotate_images=True))
    np.testing.assert_array_equal(ep.frames["wrist"], truth["demo_0"]["eye_in_hand_rgb"][:, ::-1, ::-1])


def test_import_to_lerobot_round_trip(tmp_path, make_frames):
    path = tmp_path / "libero_demo.hdf5"
    truth = _libero_file(path, make_frames)
    summary = import_hdf5(path, tmp_path / "ds")
    assert summary["episodes"] == 3 and summary["frames"] == 15
    data = read_lerobot(tmp_path / "ds")
    assert [e.instruction for e in data] == ["put the bowl on the plate"] * 3
    np.testing.assert_array_equal(data[2].action, truth["demo_10"]["actions"].astype(np.float32))
    np.testing.assert_array_equal(data[0].frames["agentview"], truth["demo_0"]["agentview_rgb"])
    assert data.info["vla_rl"]["source"] == "libero_demo.hdf5"


def test_robomimic_layout_quaternion_and_instruction(tmp_path, make_frames):
    path = tmp_path / "lift.hdf5"
    n = 4
    angle = np.linspace(0.1, 2.5, n)
    axis = np.array([0.0, 0.6, 0.8])
    quat = np.concatenate([np.sin(angle / 2)[:, None] * axis, np.cos(angle / 2)[:, None]], axis=1)  # x y z w
    with h5py.File(path, "w") as f:
        g = f.create_group("data").create_group("demo_0")
        obs = g.create_group("obs")
        obs["agentview_image"] = make_frames(n)
        obs["robot0_eye_in_hand_image"] = make_frames(n, seed=3)
        obs["robot0_eef_pos"] = np.ones((n, 3))
        obs["robot0_eef_quat"] = quat
        obs["robot0_gripper_qpos"] = np.zeros((n, 2))
        g["actions"] = np.zeros((n, 7))
    with pytest.raises(DatasetError, match=r"lift.hdf5: no language instruction for data/demo_0"):
        next(read_hdf5(path))
    ep = next(read_hdf5(path, instruction="lift the cube"))
    assert ep.instruction == "lift the cube"
    np.testing.assert_allclose(ep.state[:, 3:6], angle[:, None] * axis, atol=1e-6)
    np.testing.assert_allclose(quat_to_axis_angle(-quat), angle[:, None] * axis, atol=1e-6)  # q and -q agree
    assert ep.step_success.tolist() == [False, False, False, True]


def test_errors_name_file_and_group(tmp_path, make_frames):
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        g = f.create_group("data").create_group("demo_0")
        g.create_group("obs")["agentview_rgb"] = make_frames(3)
        g.attrs["language_instruction"] = "x"
    with pytest.raises(DatasetError, match=r"bad.hdf5: data/demo_0 has no 'actions' dataset"):
        list(read_hdf5(path))
    with h5py.File(path, "a") as f:
        f["data/demo_0/actions"] = np.zeros((3, 6))
    with pytest.raises(DatasetError, match=r"bad.hdf5: data/demo_0/actions is float64 \(3, 6\), expected"):
        list(read_hdf5(path))
    with h5py.File(path, "a") as f:
        del f["data/demo_0/actions"]
        f["data/demo_0/actions"] = np.zeros((3, 7))
    with pytest.raises(DatasetError, match=r"bad.hdf5: data/demo_0/obs has none of the state key sets"):
        list(read_hdf5(path))
    (tmp_path / "trunc.hdf5").write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match=r"trunc.hdf5: not a readable HDF5 file"):
        list(read_hdf5(tmp_path / "trunc.hdf5"))
    with h5py.File(tmp_path / "empty.hdf5", "w") as f:
        f.create_group("data")
    with pytest.raises(DatasetError, match=r"empty.hdf5: the 'data' group holds no demo_<i> groups"):
        list(read_hdf5(tmp_path / "empty.hdf5"))


def _noop_loop(actions, threshold=1e-4):
    """The rule as OpenVLA's LIBERO regeneration applies it: step by step against the last kept action."""
    out, last = [], None
    for a in actions:
        noop = np.linalg.norm(a[:6]) < threshold and (last is None or a[6] == last[6])
        out.append(noop)
        if not noop:
            last = a
    return np.array(out)


@pytest.mark.parametrize("seed", range(6))
def test_noop_mask_matches_the_step_by_step_rule(seed):
    rng = np.random.default_rng(seed)
    n = 60
    a = rng.uniform(-1, 1, (n, 7))
    a[rng.random(n) < 0.5, :6] = 0.0  # still steps
    a[rng.random(n) < 0.2, :6] = 1e-5  # below the threshold: still
    a[:, 6] = np.where(rng.random(n) < 0.8, 1.0, -1.0)
    if seed % 2:
        a[:5, :6] = 0.0  # a still start, gripper changing in it: dropped all the same
    want = _noop_loop(a)
    assert want.any() and not want.all()
    np.testing.assert_array_equal(noop_mask(a), want)


def test_noop_mask_by_hand():
    z = [0.0] * 6
    a = np.array([[*z, -1], [*z, 1], [0.1, *z[1:], 1], [*z, 1], [*z, -1], [*z, -1], [*z[:5], 2e-4, -1]])
    # 0-1: still before anything kept; 2 moves; 3 still, same gripper; 4 still but opens; 5 still; 6 rotates
    assert noop_mask(a).tolist() == [True, True, False, True, False, True, False]


def test_drop_noops_keeps_frames_state_and_success_aligned(tmp_path, make_frames):
    path = tmp_path / "libero_demo.hdf5"
    truth = _libero_file(path, make_frames, lengths=(4, 6, 5))
    with h5py.File(path, "a") as f:  # demo_0 (6 steps): steps 0, 3 and the last (the success) are no-ops
        a = f["data/demo_0/actions"][()]
        a[[0, 3, 5], :6] = 0.0
        a[3, 6] = a[2, 6]
        a[5, 6] = a[4, 6]
        f["data/demo_0/actions"][...] = a
    ep = next(read_hdf5(path, drop_noops=True))
    keep = [1, 2, 4]
    assert ep.extra["noops_dropped"] == 3 and len(ep) == 3
    np.testing.assert_array_equal(ep.action, a[keep].astype(np.float32))
    np.testing.assert_array_equal(ep.frames["agentview"], truth["demo_0"]["agentview_rgb"][keep])
    np.testing.assert_array_equal(ep.state[:, :3], truth["demo_0"]["ee_pos"][keep].astype(np.float32))
    assert ep.step_success.tolist() == [False, False, True]  # the success after dropped step 5 counts on step 4
    assert len(next(read_hdf5(path))) == 6  # off by default


def test_obs_after_action_pairs_each_action_with_the_row_before(tmp_path, make_frames):
    path = tmp_path / "libero_demo.hdf5"
    truth = _libero_file(path, make_frames)
    d = truth["demo_2"]  # 5 steps, success on the last
    ep = list(read_hdf5(path, obs_after_action=True))[1]
    assert len(ep) == 4
    np.testing.assert_array_equal(ep.action, d["actions"][1:].astype(np.float32))
    np.testing.assert_array_equal(ep.frames["wrist"], d["eye_in_hand_rgb"][:-1])
    np.testing.assert_array_equal(ep.state[:, 3:6], d["ee_ori"][:-1].astype(np.float32))
    assert ep.step_success.tolist() == [False, False, False, True]
