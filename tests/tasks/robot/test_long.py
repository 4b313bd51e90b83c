"""PlaceThenOpenDrawer: resets are collision-free, and success needs both sub-goals at once (the shared
contract: test_task_contract.py)."""

import numpy as np
import pytest

from tasks.robot._scene import BIN_HALF, CUBE_HALF, DRAWER_OPEN, drawer_opening, in_bin, mocap_pose
from vla_rl.splits import split_seeds

TASK = "mujoco/PlaceThenOpenDrawer-v1"


def test_reset_layout_has_no_overlaps(env):
    for seed in split_seeds("test", 40):
        env.reset(seed=seed)
        sim = env.sim
        cube_geom, table = sim.model.geom("cube_geom").id, sim.model.geom("table").id
        for i in range(sim.data.ncon):  # the only contacts: the cube resting on the table
            assert {int(sim.data.contact[i].geom1), int(sim.data.contact[i].geom2)} == {cube_geom, table}
        cube = sim.body_pos("cube")
        assert cube[2] == pytest.approx(CUBE_HALF)
        assert not in_bin(sim, "cube")
        assert np.max(np.abs(cube[:2] - mocap_pose(sim, "bin")[0][:2])) > BIN_HALF + CUBE_HALF
        assert drawer_opening(sim) == 0.0


def test_success_needs_both_subgoals(env):
    env.reset(seed=2_000_002)
    sim = env.sim
    assert not env.task.is_success(sim)
    # drawer open, cube still on the table: no
    sim.set_joint_qpos("drawer_slide", DRAWER_OPEN + 0.02)
    sim.forward()
    assert not env.task.is_success(sim)
    # cube dropped into the bin as well: yes
    bin_pos = mocap_pose(sim, "bin")[0]
    sim.set_free_pose("cube_joint", bin_pos + [0.0, 0.0, 0.04])
    sim.forward()
    for _ in range(10):
        sim.apply_action(np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32))
    assert in_bin(sim, "cube")
    assert env.task.is_success(sim)
    # cube in the bin, drawer pushed shut: no
    sim.set_joint_qpos("drawer_slide", 0.0)
    sim.forward()
    assert not env.task.is_success(sim)
