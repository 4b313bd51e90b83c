"""PlaceThenOpenDrawer: the long-horizon task (a LIBERO-Long analogue) chaining two skills: put the cube
in the bin, then open the drawer."""

from __future__ import annotations

import numpy as np

from sims.mujoco.sim import ArmSim
from sims.mujoco.task import ArmTask, Expert, flip, move_action
from tasks.robot._scene import (
    BIN_HALF,
    BIN_WALL,
    CUBE_HALF,
    DRAWER_OPEN,
    GRASP_HALF_X,
    GRASP_HALF_Y,
    HAND_HALF_X,
    HAND_HALF_Y,
    PickPlace,
    PullDrawer,
    bin_xml,
    boxes_apart,
    cabinet_footprint,
    cabinet_xml,
    cube_xml,
    drawer_opening,
    finger_contacts,
    in_bin,
    materials_xml,
    mocap_pose,
    set_mocap,
    square,
    yaw_quat,
)

CLEARANCE = 0.02  # m between the cube's grasp footprint and the furniture at reset


class PlaceThenOpenDrawer(ArmTask):
    """A red cube, an open bin and a drawer cabinet; success when, at the same time, the cube lies in the
    bin (released) and the drawer is pulled out at least `DRAWER_OPEN` (0.12 m).

    Randomised per seed: which side (left/right) the cabinet stands on, the bin opposite (the right, y < 0, is
    nominal: a narrow variant puts it left with probability spread / 2, `sims.mujoco.task.flip`); the cabinet's
    position (x 0.6..0.68, |y| 0.24..0.31) and yaw (|yaw| <= 0.15 rad); the bin's position (x 0.42..0.6,
    |y| 0.18..0.28); the cube's position (x 0.36..0.55, |y| <= 0.25, clear of both) and yaw (|yaw| <= 0.3).
    """

    instructions = (
        "put the cube in the bin, then open the drawer",
        "place the red cube in the bin and then open the drawer",
        "first put the red block into the bin, then pull the drawer open",
        "put the red cube in the basket and open the drawer",
    )

    def objects_xml(self) -> str:
        return cabinet_xml() + bin_xml() + cube_xml("cube", CUBE_HALF, "red")

    def assets_xml(self) -> str:
        return materials_xml()

    def initialize(self, sim: ArmSim, rng: np.random.Generator) -> None:
        cab, cab_yaw, bin_pos, cube = _layout(rng)
        set_mocap(sim, "cabinet", cab, cab_yaw)
        set_mocap(sim, "bin", bin_pos)
        sim.set_joint_qpos("drawer_slide", 0.0)
        sim.set_free_pose("cube_joint", np.array([cube[0], cube[1], CUBE_HALF]),
                          yaw_quat(float(rng.uniform(-0.3, 0.3))))

    def is_success(self, sim: ArmSim) -> bool:
        if drawer_opening(sim) < DRAWER_OPEN or not in_bin(sim, "cube"):
            return False
        return finger_contacts(sim, "cube") == 0

    def expert(self) -> Expert:
        return _LongExpert()


class _LongExpert(Expert):
    """Place phase (pick the cube, drop it in the bin's middle), then drawer phase (hook and pull)."""

    def __init__(self) -> None:
        self.place = PickPlace(
            "cube", CUBE_HALF,
            place_xy=lambda sim: mocap_pose(sim, "bin")[0][:2],
            place_z=lambda sim: mocap_pose(sim, "bin")[0][2] + 2 * BIN_WALL + CUBE_HALF + 0.01,
        )
        self.drawer = PullDrawer()

    def act(self, sim: ArmSim) -> np.ndarray:
        if not self.place.done:
            return self.place.act(sim)
        if not self.drawer.done:
            return self.drawer.act(sim)
        return move_action(sim, sim.tcp_pos(), gripper=1.0)


def _layout(rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Cabinet position and yaw, bin position, cube xy: cabinet and bin on opposite sides, the cube clear
    of both (its grasp footprint, and the hand above it for the taller cabinet). Redraws until valid."""
    while True:
        side = 1.0 if flip(rng) else -1.0  # the cabinet right (-1) is nominal
        cab = np.array([rng.uniform(0.6, 0.68), side * rng.uniform(0.24, 0.31), 0.0])
        cab_yaw = float(rng.uniform(-0.15, 0.15))
        bin_pos = np.array([rng.uniform(0.42, 0.6), -side * rng.uniform(0.18, 0.28), 0.0])
        cube = rng.uniform([0.36, -0.25], [0.55, 0.25])
        fingers = square(cube, GRASP_HALF_X, GRASP_HALF_Y)
        hand = square(cube, HAND_HALF_X, HAND_HALF_Y)
        if (boxes_apart(hand, cabinet_footprint(cab, cab_yaw), CLEARANCE)
                and boxes_apart(fingers, square(bin_pos, BIN_HALF), CLEARANCE)):
            return cab, cab_yaw, bin_pos, cube
