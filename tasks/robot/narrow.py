"""Narrow variants of the robot tasks: the same scenes, success predicates and experts, with each
initial-state range shrunk to a centred fraction (`ArmTask.spread`).

They make the quickstart suite: cloned from ONE demonstration per task, a policy succeeds on a minority
of these initial states (like an OpenVLA-OFT policy fine-tuned on one LIBERO trajectory, SimpleVLA-RL
Table 2), which leaves GRPO groups with mixed outcomes to learn from.
"""

from __future__ import annotations

from sims.mujoco.task import ArmTask
from tasks.robot.drawer import OpenDrawer
from tasks.robot.pick import PickCube
from tasks.robot.push import PushCube


def narrowed(base: type[ArmTask], spread: float, max_steps: int, suffix: str = "Narrow") -> type[ArmTask]:
    """A subclass of ``base`` (named ``base`` + ``suffix``) that samples the centred fraction ``spread`` of each
    initial-state range and truncates episodes at ``max_steps`` (2.5-5x its expert's longest episode, below the
    full task's limit: failed rollouts, most of them early in RL, stop sooner)."""
    return type(f"{base.__name__}{suffix}", (base,), {
        "spread": spread, "max_steps": max_steps,
        "__doc__": f"{base.__name__} with {spread:g} of its initial-state ranges, {max_steps} steps."})


OpenDrawerNarrow = narrowed(OpenDrawer, 0.5, max_steps=100)
PickCubeNarrow = narrowed(PickCube, 0.3, max_steps=50)
PushCubeNarrow = narrowed(PushCube, 0.2, max_steps=70)

# v2 (the quickstart since stop 7): half the v1 spreads for pick and push, where the one-demo policy sampled at
# T 1.0 succeeded on ~0% of v1's initial states (no mixed GRPO groups, no signal) and succeeds on 15-30% of these.
PickCubeNarrowV2 = narrowed(PickCube, 0.15, max_steps=50, suffix="NarrowV2")
PushCubeNarrowV2 = narrowed(PushCube, 0.1, max_steps=70, suffix="NarrowV2")
