"""Robot tasks on the native MuJoCo arm, by versioned id.

Every built-in task is listed here with a lazy entry point (nothing heavy is imported until `make`).
"""

from __future__ import annotations

from typing import Any

from vla_rl.registry import Registry

TASKS: Registry = Registry("robot task")
TASKS.register("mujoco/Reach-v1", "tasks.robot.reach:Reach")
TASKS.register("mujoco/PushCube-v1", "tasks.robot.push:PushCube")
TASKS.register("mujoco/PickCube-v1", "tasks.robot.pick:PickCube")
TASKS.register("mujoco/PlaceInBin-v1", "tasks.robot.place:PlaceInBin")
TASKS.register("mujoco/StackCube-v1", "tasks.robot.stack:StackCube")
TASKS.register("mujoco/OpenDrawer-v1", "tasks.robot.drawer:OpenDrawer")
TASKS.register("mujoco/PlaceThenOpenDrawer-v1", "tasks.robot.long:PlaceThenOpenDrawer")
# The quickstart suite: narrower initial-state ranges (tasks/robot/narrow.py).
TASKS.register("mujoco/OpenDrawerNarrow-v1", "tasks.robot.narrow:OpenDrawerNarrow")
TASKS.register("mujoco/PickCubeNarrow-v1", "tasks.robot.narrow:PickCubeNarrow")
TASKS.register("mujoco/PushCubeNarrow-v1", "tasks.robot.narrow:PushCubeNarrow")
TASKS.register("mujoco/PickCubeNarrow-v2", "tasks.robot.narrow:PickCubeNarrowV2")
TASKS.register("mujoco/PushCubeNarrow-v2", "tasks.robot.narrow:PushCubeNarrowV2")


def make(task_id: str, **kwargs: Any):
    """Build the Gymnasium env for ``task_id`` (``kwargs`` go to `sims.mujoco.env.ArmEnv`)."""
    from sims.mujoco.env import ArmEnv

    task_cls = TASKS.get(task_id)
    return ArmEnv(task_cls(), task_id=task_id, **kwargs)


def task_ids() -> list[str]:
    return TASKS.names()
