"""PlaceInBin: pick the cube up and put it into an open box (the bin) elsewhere on the table."""

from __future__ import annotations

import numpy as np

from sims.mujoco.sim import ArmSim
from sims.mujoco.task import ArmTask, Expert, move_action
from tasks.robot.pick import (
    CUBE_HALF,
    XY_HIGH,
    XY_LOW,
    GraspExpert,
    cube_xml,
    finger_contacts,
    place_cube,
    sample_cube,
)

BIN_INNER = 0.065  # m, half the bin's inner side
BIN_WALL = 0.005  # m, half a wall's thickness
BIN_FLOOR = 0.01  # m, the height of the bin floor's top above the table
BIN_HEIGHT = 0.05  # m, the height of the walls' top above the table
BIN_XY_LOW = np.array([0.42, -0.18])  # where the bin's centre is drawn from
BIN_XY_HIGH = np.array([0.63, 0.18])
SEPARATION = (0.18, 0.3)  # m, the range of distances between the cube's and the bin's centres at reset
RELEASED_OPENING = 0.025  # m, each finger must be open at least this much for the cube to count as released


def bin_xml(name: str = "bin", material: str = "blue") -> str:
    """An open box: a base plate and four walls around the origin of a mocap body (static for the physics)."""
    inner, wall, floor, height = BIN_INNER, BIN_WALL, BIN_FLOOR, BIN_HEIGHT
    outer = inner + 2 * wall
    wall_half_h = (height - floor) / 2
    wall_z = floor + wall_half_h
    off = inner + wall
    geoms = [
        f'<geom name="{name}_floor" type="box" size="{outer} {outer} {floor / 2}" pos="0 0 {floor / 2}"/>',
        f'<geom name="{name}_wall_px" type="box" size="{wall} {outer} {wall_half_h}" pos="{off} 0 {wall_z}"/>',
        f'<geom name="{name}_wall_nx" type="box" size="{wall} {outer} {wall_half_h}" pos="{-off} 0 {wall_z}"/>',
        f'<geom name="{name}_wall_py" type="box" size="{inner} {wall} {wall_half_h}" pos="0 {off} {wall_z}"/>',
        f'<geom name="{name}_wall_ny" type="box" size="{inner} {wall} {wall_half_h}" pos="0 {-off} {wall_z}"/>',
    ]
    attrs = f'material="{material}" friction="1 0.005 0.0001" group="1"'
    return (
        f'<body name="{name}" mocap="true" pos="0.55 0.15 0">'
        + "".join(g.replace("/>", f" {attrs}/>") for g in geoms)
        + "</body>"
    )


class PlaceInBin(ArmTask):
    """Put the red cube into the blue bin: success once it rests on the bin floor and the gripper has let go."""

    instructions = (
        "put the red cube in the blue bin",
        "place the red cube into the bin",
        "pick up the red cube and drop it in the blue box",
    )

    def objects_xml(self) -> str:
        return bin_xml() + cube_xml()

    def initialize(self, sim: ArmSim, rng: np.random.Generator) -> None:
        bin_xy = rng.uniform(BIN_XY_LOW, BIN_XY_HIGH)
        while True:
            xy, yaw = sample_cube(rng, XY_LOW, XY_HIGH)
            if SEPARATION[0] <= np.linalg.norm(xy - bin_xy) <= SEPARATION[1]:
                break
        # The bin is a mocap body (static for the physics; its pose is part of `ArmSim.get_state`).
        sim.data.mocap_pos[sim.model.body("bin").mocapid[0]] = (bin_xy[0], bin_xy[1], 0.0)
        place_cube(sim, xy, yaw)

    def is_success(self, sim: ArmSim) -> bool:
        cube = sim.body_pos("cube")
        bin_xy = sim.body_pos("bin")[:2]
        inside = bool(np.all(np.abs(cube[:2] - bin_xy) <= BIN_INNER))
        low = cube[2] <= BIN_FLOOR + CUBE_HALF + 0.01
        released = not any(finger_contacts(sim, "cube")) and bool(np.all(sim.gripper_qpos() >= RELEASED_OPENING))
        return inside and low and released

    def expert(self) -> Expert:
        return _PlaceExpert()


class _PlaceExpert(GraspExpert):
    """Grasp the cube, carry it above the bin (lifting and moving at once), lower it in, open, back off upward.

    The carry is slow (`CARRY_SPEED`): with the arm's stiff servos a held cube creeps along the finger pads
    when the hand moves fast along x (measured: about 1.3 cm per 10 cm at full speed mid-table, little below
    0.35, but still some near the far corners). The carry steers the cube itself, not the TCP, over the bin
    centre, and if the cube slips out anyway the expert grasps it again (`GraspExpert.restart`).
    """

    TRAVEL_Z = BIN_HEIGHT + 0.035  # TCP height of the approach: the open fingertips clear the bin walls
    CARRY_Z = BIN_HEIGHT + CUBE_HALF + 0.025  # TCP height while carrying: the cube's bottom clears the walls
    MOVE_Z = BIN_HEIGHT  # TCP height from which the carry may move sideways (the walls are still far away)
    CARRY_SPEED = 0.25  # the largest horizontal action component while the cube is held
    LOWER_TOL = 0.012  # m, horizontal error of the cube over the bin centre at which the cube is lowered
    RELEASE_Z = BIN_FLOOR + CUBE_HALF + 0.01  # TCP height at which the fingers open

    def __init__(self) -> None:
        super().__init__("cube", lift_to=self.CARRY_Z, travel_z=self.TRAVEL_Z)
        self.stage = "carry"
        self.release_xy = np.zeros(2)

    def holding(self) -> bool:
        return super().holding() and self.stage != "release"

    def restart(self) -> None:
        super().restart()
        self.stage = "carry"

    def _carry_xy(self, sim: ArmSim) -> np.ndarray:
        """The TCP position (xy) that puts the held cube's centre over the bin's."""
        return sim.body_pos("bin")[:2] - (sim.body_pos("cube")[:2] - sim.tcp_pos()[:2])

    def _carry(self, sim: ArmSim, xy: np.ndarray, z: float) -> np.ndarray:
        a = move_action(sim, np.array([xy[0], xy[1], z]), gripper=1.0, gain=self.GAIN)
        a[:2] = np.clip(a[:2], -self.CARRY_SPEED, self.CARRY_SPEED)
        return a

    def lift_action(self, sim: ArmSim) -> np.ndarray:
        tcp = sim.tcp_pos()
        xy = self._carry_xy(sim) if tcp[2] > self.MOVE_Z else tcp[:2]
        return self._carry(sim, xy, self.CARRY_Z)

    def after_lift(self, sim: ArmSim) -> np.ndarray:
        tcp = sim.tcp_pos()
        xy = self._carry_xy(sim)
        if self.stage == "carry":
            if np.linalg.norm(xy - tcp[:2]) < self.LOWER_TOL:
                self.stage = "lower"
            else:
                return self._carry(sim, xy, self.CARRY_Z)
        if self.stage == "lower":
            if tcp[2] < self.RELEASE_Z + 0.006:
                self.stage = "release"
                self.release_xy = tcp[:2].copy()
            else:
                return self._carry(sim, xy, self.RELEASE_Z)
        # release: open part way (so the pads stay clear of the walls), then back off upward
        target = np.array([self.release_xy[0], self.release_xy[1], self.RELEASE_Z])
        if np.all(sim.gripper_qpos() >= RELEASED_OPENING + 0.003):
            target[2] = self.CARRY_Z
        return move_action(sim, target, gripper=-0.5, gain=self.GAIN)
