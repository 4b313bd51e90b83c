"""OpenDrawer: pull a cabinet's drawer open by its handle."""

from __future__ import annotations

import numpy as np

from sims.mujoco.sim import ArmSim
from sims.mujoco.task import ArmTask, Expert, move_action
from tasks.robot._scene import (
    DRAWER_OPEN,
    PullDrawer,
    cabinet_xml,
    drawer_opening,
    materials_xml,
    set_mocap,
)


class OpenDrawer(ArmTask):
    """A cabinet stands in front of the arm, its drawer facing the robot; success once the drawer is
    pulled out at least `DRAWER_OPEN` (0.12 m) along its slide joint.

    Randomised per seed: the cabinet's position (x 0.58..0.68, y -0.15..0.15), its yaw (|yaw| <= 0.2 rad)
    and the drawer's initial opening (0..0.03 m).
    """

    instructions = (
        "open the drawer",
        "pull the drawer open",
        "open the cabinet drawer",
        "pull out the drawer of the cabinet",
    )

    def objects_xml(self) -> str:
        return cabinet_xml()

    def assets_xml(self) -> str:
        return materials_xml()

    def initialize(self, sim: ArmSim, rng: np.random.Generator) -> None:
        x, y = rng.uniform([0.58, -0.15], [0.68, 0.15])
        yaw = float(rng.uniform(-0.2, 0.2))
        set_mocap(sim, "cabinet", np.array([x, y, 0.0]), yaw)
        sim.set_joint_qpos("drawer_slide", float(rng.uniform(0.0, 0.03)))

    def is_success(self, sim: ArmSim) -> bool:
        return drawer_opening(sim) >= DRAWER_OPEN

    def expert(self) -> Expert:
        return _DrawerExpert()


class _DrawerExpert(Expert):
    def __init__(self) -> None:
        self.skill = PullDrawer()

    def act(self, sim: ArmSim) -> np.ndarray:
        if self.skill.done:
            return move_action(sim, sim.tcp_pos(), gripper=1.0)
        return self.skill.act(sim)
