"""Reach: bring the gripper to a floating target ball."""

from __future__ import annotations

import numpy as np

from sims.mujoco.sim import ArmSim
from sims.mujoco.task import ArmTask, Expert, move_action

SUCCESS_DIST = 0.04  # m between the TCP and the target centre


class Reach(ArmTask):
    instructions = (
        "reach the yellow ball",
        "move the gripper to the yellow ball",
        "touch the yellow target",
    )

    def objects_xml(self) -> str:
        return ('<body name="target" mocap="true" pos="0.5 0 0.15">'
                '<geom type="sphere" size="0.025" material="yellow" contype="0" conaffinity="0"/></body>')

    def initialize(self, sim: ArmSim, rng: np.random.Generator) -> None:
        pos = rng.uniform([0.35, -0.25, 0.05], [0.7, 0.25, 0.3])
        sim.data.mocap_pos[0] = pos

    def is_success(self, sim: ArmSim) -> bool:
        return bool(np.linalg.norm(sim.tcp_pos() - sim.data.mocap_pos[0]) < SUCCESS_DIST)

    def expert(self) -> Expert:
        return _ReachExpert()


class _ReachExpert(Expert):
    def act(self, sim: ArmSim) -> np.ndarray:
        return move_action(sim, sim.data.mocap_pos[0].copy(), gripper=-1.0)
