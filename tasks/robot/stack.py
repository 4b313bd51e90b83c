"""StackCube: pick up the red cube and stack it on the green cube."""

from __future__ import annotations

import numpy as np

from sims.mujoco.sim import ArmSim
from sims.mujoco.task import ArmTask, Expert, move_action
from tasks.robot._scene import CUBE_HALF, PickPlace, cube_xml, finger_contacts, free_linvel, yaw_quat

GREEN_HALF = 0.025  # m, the base cube is slightly larger than the red one
XY_TOL = 0.02  # m, red centre to green centre, horizontally
Z_TOL = 0.008  # m, red centre height vs. resting exactly on the green top
STILL = 0.05  # m/s, both cubes slower than this
MIN_APART = 0.12  # m between the two cubes' centres at reset
MAX_REDRAWS = 1000  # of the green cube's position before a reset gives up


class StackCube(ArmTask):
    """Two free cubes on the table; success when the red one rests on top of the green one, released by
    the gripper, both nearly still.

    Randomised per seed: both cubes' xy in x 0.38..0.62, y -0.2..0.2 (at least `MIN_APART` apart) and
    their yaw (|yaw| <= 0.3 rad).
    """

    instructions = (
        "stack the red cube on the green cube",
        "put the red block on top of the green block",
        "pick up the red cube and place it on the green cube",
        "place the red cube onto the green one",
    )

    def objects_xml(self) -> str:
        return cube_xml("green", GREEN_HALF, "green") + cube_xml("red", CUBE_HALF, "red")

    def initialize(self, sim: ArmSim, rng: np.random.Generator) -> None:
        lo, hi = np.array([0.38, -0.2]), np.array([0.62, 0.2])
        red = rng.uniform(lo, hi)
        green = rng.uniform(lo, hi)
        for _ in range(MAX_REDRAWS):
            if np.linalg.norm(red - green) >= MIN_APART:
                break
            green = rng.uniform(lo, hi)
        else:  # a narrowed range (NarrowedRNG) too small to hold two cubes MIN_APART apart
            raise ValueError(f"no green cube position {MIN_APART} m from the red one in {MAX_REDRAWS} draws: the "
                             "initial-state range is too narrow for two cubes (StackCube needs spread >= 0.3)")
        yaws = rng.uniform(-0.3, 0.3, size=2)
        sim.set_free_pose("red_joint", np.array([red[0], red[1], CUBE_HALF]), yaw_quat(yaws[0]))
        sim.set_free_pose("green_joint", np.array([green[0], green[1], GREEN_HALF]), yaw_quat(yaws[1]))

    def is_success(self, sim: ArmSim) -> bool:
        red, green = sim.body_pos("red"), sim.body_pos("green")
        on_top = (np.linalg.norm(red[:2] - green[:2]) < XY_TOL
                  and abs(red[2] - (green[2] + GREEN_HALF + CUBE_HALF)) < Z_TOL)
        if not on_top:
            return False
        still = (np.linalg.norm(free_linvel(sim, "red_joint")) < STILL
                 and np.linalg.norm(free_linvel(sim, "green_joint")) < STILL)
        return bool(still and finger_contacts(sim, "red") == 0)

    def expert(self) -> Expert:
        return _StackExpert()


class _StackExpert(Expert):
    def __init__(self) -> None:
        self.skill = PickPlace(
            "red", CUBE_HALF,
            place_xy=lambda sim: sim.body_pos("green")[:2],
            place_z=lambda sim: sim.body_pos("green")[2] + GREEN_HALF + CUBE_HALF + 0.004,
        )

    def act(self, sim: ArmSim) -> np.ndarray:
        if self.skill.done:
            return move_action(sim, sim.tcp_pos() + np.array([0.0, 0.0, 0.02]), gripper=-1.0)
        return self.skill.act(sim)
