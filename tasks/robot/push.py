"""PushCube: push a cube across the table onto a flat goal disc."""

from __future__ import annotations

import numpy as np

from sims.mujoco.arm import FINGER_OPEN
from sims.mujoco.sim import ArmSim
from sims.mujoco.task import ArmTask, Expert, move_action
from tasks.robot.pick import CUBE_HALF, XY_HIGH, XY_LOW, cube_xml, place_cube, sample_cube

SUCCESS_DIST = 0.05  # m between the cube's and the goal's centres (xy); also the goal disc's radius
GOAL_DIST = (0.1, 0.2)  # m, the range of the goal's distance from the cube at reset
# The pusher starts behind the cube; with the gripper pointing down the arm cannot reach much closer to its base
# than x = 0.3 near y = 0 at that height, so layouts that would need it are redrawn.
PUSH_ROOM = 0.07  # m behind the cube's centre that the pusher needs
MIN_PUSHER_X = 0.3
YAW_RANGE = (-1.9, 3.4)  # rad, the gripper yaws the push expert keeps to (the wrist reaches -2.1 .. 3.7)


class PushCube(ArmTask):
    """Push the red cube onto the green disc: success once its centre is within `SUCCESS_DIST` of the disc's."""

    instructions = (
        "push the red cube onto the green circle",
        "slide the red cube to the green target",
        "push the cube to the green goal",
    )

    def objects_xml(self) -> str:
        goal = (
            '<body name="goal" mocap="true" pos="0.6 0 0">'
            f'<geom name="goal_disc" type="cylinder" size="{SUCCESS_DIST} 0.001" pos="0 0 0.001" material="green" '
            'contype="0" conaffinity="0" group="1"/></body>'
        )
        return goal + cube_xml()

    def initialize(self, sim: ArmSim, rng: np.random.Generator) -> None:
        xy, yaw = sample_cube(rng)
        while True:
            angle = rng.uniform(-np.pi, np.pi)
            goal = xy + rng.uniform(*GOAL_DIST) * np.array([np.cos(angle), np.sin(angle)])
            behind = xy - PUSH_ROOM * (goal - xy) / np.linalg.norm(goal - xy)  # where the pusher starts
            if np.all(goal >= XY_LOW) and np.all(goal <= XY_HIGH) and behind[0] >= MIN_PUSHER_X:
                break
        sim.data.mocap_pos[sim.model.body("goal").mocapid[0]] = (goal[0], goal[1], 0.0)
        place_cube(sim, xy, yaw)

    def is_success(self, sim: ArmSim) -> bool:
        return bool(np.linalg.norm(sim.body_pos("cube")[:2] - sim.body_pos("goal")[:2]) < SUCCESS_DIST)

    def expert(self) -> Expert:
        return _PushExpert()


def tcp_yaw(sim: ArmSim) -> float:
    """The gripper's yaw (rad, about world z): 0 when the fingers close along world y, as in `move_action`."""
    rot = sim.tcp_rotmat()
    return float(np.arctan2(rot[1, 0], rot[0, 0]))


def wrap_half_turn(angle: float) -> float:
    """``angle`` modulo pi, into [-pi/2, pi/2): the gripper looks the same turned by half a turn."""
    return float((angle + np.pi / 2) % np.pi - np.pi / 2)


class _PushExpert(Expert):
    """Pushing with a two-pronged pusher: the fingers part to `PRONG_OPENING` each (less than the cube's half
    side, so the cube cannot slip between them) and the gripper turns so that both pads press the cube's back
    face side by side; that flat contact keeps the cube from spinning. The push runs along the line from the
    cube to the goal, re-aimed every step.

    Phases: ``approach`` (above the point behind the cube, turning the gripper) -> ``descend`` -> ``push``; if
    the pusher loses the cube's back it goes to ``retreat`` (back and up) and approaches again.
    """

    SAFE_Z = 0.07  # TCP height that clears the cube (the fingertips reach 1 cm below the TCP)
    PUSH_Z = 0.018  # TCP height while pushing: the fingertips 8 mm above the table
    BEHIND = 0.06  # m behind the cube's centre where the pushing starts
    CONTACT = CUBE_HALF + 0.01  # m, the cube's half side plus the pads' half width (along the push)
    LEAD = 0.02  # m the pushing target runs ahead of the contact point
    PUSH_SPEED = 0.5  # the largest horizontal action component while pushing (a fast strike tips the cube)
    PRONG_OPENING = 0.012  # m each finger opens while pushing
    YAW_TOL = 0.1  # rad of yaw error allowed before descending
    GAIN = 1.5

    def __init__(self) -> None:
        self.phase = "approach"
        self.gripper = 1.0 - 2.0 * self.PRONG_OPENING / FINGER_OPEN  # the gripper action for that opening

    def _move(self, sim: ArmSim, xy: np.ndarray, z: float, yaw: float) -> np.ndarray:
        return move_action(sim, np.array([xy[0], xy[1], z]), gripper=self.gripper, gain=self.GAIN, yaw=yaw)

    def act(self, sim: ArmSim) -> np.ndarray:
        tcp = sim.tcp_pos()
        cube = sim.body_pos("cube")[:2]
        to_goal = sim.body_pos("goal")[:2] - cube
        dist = float(np.linalg.norm(to_goal))
        u = to_goal / max(dist, 1e-6)
        # the pads' faces point along the gripper's x axis (cos yaw, sin yaw): turn it along the push, the short
        # way, but within the wrist's range (joint7 = 0.785 - yaw, limited to +-2.9 rad)
        current = tcp_yaw(sim)
        yaw = current + wrap_half_turn(float(np.arctan2(u[1], u[0])) - current)
        if not YAW_RANGE[0] <= yaw <= YAW_RANGE[1]:
            yaw -= np.pi * np.sign(yaw - np.mean(YAW_RANGE))
        start = cube - self.BEHIND * u
        if self.phase == "retreat":
            if tcp[2] > self.SAFE_Z - 0.01:
                self.phase = "approach"
            else:
                return self._move(sim, tcp[:2] - 0.02 * u, self.SAFE_Z, yaw)
        if self.phase == "approach":
            if np.linalg.norm(start - tcp[:2]) < 0.01 and abs(yaw - current) < self.YAW_TOL:
                self.phase = "descend"
            else:
                return self._move(sim, start, self.SAFE_Z, yaw)
        if self.phase == "descend":
            if tcp[2] < self.PUSH_Z + 0.008:
                self.phase = "push"
            else:
                return self._move(sim, start, self.PUSH_Z, yaw)
        # push: hold the TCP on the line through the cube's centre toward the goal, and move along it
        rel = tcp[:2] - cube
        along, lateral = float(rel @ u), float(rel @ np.array([-u[1], u[0]]))
        if along > -0.02 or abs(lateral) > 0.025:
            self.phase = "retreat"
            return self._move(sim, tcp[:2] - 0.02 * u, self.SAFE_Z, yaw)
        target = cube - (self.CONTACT - min(self.LEAD, dist)) * u
        a = self._move(sim, target, self.PUSH_Z, yaw)
        a[:2] = np.clip(a[:2], -self.PUSH_SPEED, self.PUSH_SPEED)
        return a
