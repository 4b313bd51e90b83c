"""PickCube: grasp a small cube and lift it off the table.

Also home to the cube helpers that the other cube tasks share (`cube_xml`, `sample_cube`, `finger_contacts`,
`is_grasped`) and to `GraspExpert`, the scripted grasp-and-lift routine that `PlaceInBin` extends.
"""

from __future__ import annotations

import numpy as np

from sims.mujoco.sim import ArmSim
from sims.mujoco.task import ArmTask, Expert, move_action

CUBE_HALF = 0.02  # m, half the cube's side
CUBE_MASS = 0.08  # kg
LIFT_HEIGHT = 0.08  # m, the cube's bottom above the table for success
GRASP_DIST = 0.03  # m, the most the cube centre may be from the TCP while grasped
MAX_YAW = 0.3  # rad, the cube's initial yaw is drawn from [-MAX_YAW, MAX_YAW]
# Where cubes (and other objects) are placed, x and y (m, world frame).
XY_LOW = np.array([0.35, -0.25])
XY_HIGH = np.array([0.7, 0.25])


def cube_xml(name: str = "cube", material: str = "red", half: float = CUBE_HALF, mass: float = CUBE_MASS) -> str:
    """A free-jointed box body ``name`` with a free joint ``{name}_joint`` (placed by the task).

    Contact parameters: with ``priority="1"`` the cube's own friction (0.5) applies against the table and the
    bin, so that a push low on its face slides it rather than tipping it (at the table's 1.0 it tips over
    the front edge); against the finger pads, which also have priority 1, MuJoCo takes the larger friction
    (the pads' 2.0) and averages ``solref``, which matches the pads' so the grip is as stiff as theirs alone.
    """
    return (
        f'<body name="{name}" pos="0.5 0 {half}">'
        f'<freejoint name="{name}_joint"/>'
        f'<geom name="{name}_geom" type="box" size="{half} {half} {half}" mass="{mass}" material="{material}" '
        'friction="0.5 0.005 0.0001" priority="1" solref="0.01 1" condim="4" group="1"/>'
        "</body>"
    )


def yaw_quat(yaw: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by ``yaw`` rad about world z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def place_cube(sim: ArmSim, xy: np.ndarray, yaw: float, name: str = "cube", half: float = CUBE_HALF) -> None:
    """Rest cube ``name`` on the table at ``xy`` (2,) with ``yaw`` (rad)."""
    sim.set_free_pose(f"{name}_joint", np.array([xy[0], xy[1], half]), yaw_quat(yaw))


def sample_cube(
    rng: np.random.Generator, low: np.ndarray = XY_LOW, high: np.ndarray = XY_HIGH
) -> tuple[np.ndarray, float]:
    """A cube position xy (2,) uniform in [low, high] and a yaw in [-MAX_YAW, MAX_YAW]."""
    xy = rng.uniform(low, high)
    yaw = float(rng.uniform(-MAX_YAW, MAX_YAW))
    return xy, yaw


def finger_contacts(sim: ArmSim, body: str) -> tuple[bool, bool]:
    """Whether the left and the right finger each touch ``body``."""
    m, d = sim.model, sim.data
    target = m.body(body).id
    fingers = (m.body("left_finger").id, m.body("right_finger").id)
    touch = [False, False]
    for c in d.contact[: d.ncon]:
        b1, b2 = m.geom_bodyid[c.geom1], m.geom_bodyid[c.geom2]
        for i, f in enumerate(fingers):
            if (b1 == f and b2 == target) or (b2 == f and b1 == target):
                touch[i] = True
    return touch[0], touch[1]


def is_grasped(sim: ArmSim, body: str = "cube") -> bool:
    """Both fingers touch ``body`` and its centre lies within `GRASP_DIST` of the TCP."""
    left, right = finger_contacts(sim, body)
    return left and right and bool(np.linalg.norm(sim.body_pos(body) - sim.tcp_pos()) < GRASP_DIST)


class PickCube(ArmTask):
    """Pick up the red cube: success once its bottom is `LIFT_HEIGHT` above the table while grasped."""

    instructions = (
        "pick up the red cube",
        "lift the red cube off the table",
        "grasp the red cube and raise it",
    )

    def objects_xml(self) -> str:
        return cube_xml()

    def initialize(self, sim: ArmSim, rng: np.random.Generator) -> None:
        xy, yaw = sample_cube(rng)
        place_cube(sim, xy, yaw)

    def is_success(self, sim: ArmSim) -> bool:
        lifted = sim.body_pos("cube")[2] - CUBE_HALF >= LIFT_HEIGHT
        return bool(lifted and is_grasped(sim, "cube"))

    def expert(self) -> Expert:
        return GraspExpert("cube", lift_to=CUBE_HALF + LIFT_HEIGHT + 0.04)


class GraspExpert(Expert):
    """Scripted grasp: move above the body with the fingers open, descend, close, lift to ``lift_to``.

    Phases: ``approach`` -> ``descend`` -> ``close`` -> ``lift`` -> ``after``; if the fingers close on nothing
    while it should be holding the body, it starts over from ``approach``. The approach travels at
    ``travel_z`` (if given) and then keeps the TCP `CLEARANCE` above the grasp point until the fingers are
    centred over the body, so they strike neither the body nor anything on the way; subclasses act after the
    lift by overriding `lift_action` and `after_lift` (the default holds the lifted pose).

    Args:
        body: the name of the (cube-shaped) body to grasp.
        lift_to: TCP height (m) to lift to.
        half: the body's half size (m); the grasp height is its centre.
        travel_z: TCP height (m) for the approach while still far from the body (None: no minimum).
    """

    CLEARANCE = 0.045  # m above the grasp point while centring over the body
    NEAR = 0.03  # m, the horizontal distance from the body within which the approach leaves ``travel_z``
    ALIGN_TOL = 0.006  # m, the horizontal error at which the descent starts, and the closing
    CLOSE_STEPS = 4  # control steps for the fingers to close
    EMPTY_GRIP = 0.008  # m, both fingers closer than this while holding: the body has slipped out
    GAIN = 1.5

    def __init__(self, body: str, lift_to: float, half: float = CUBE_HALF, travel_z: float | None = None) -> None:
        self.body = body
        self.lift_to = lift_to
        self.half = half
        self.travel_z = travel_z
        self.phase = "approach"
        self.count = 0
        self.hold = np.zeros(3)

    def grasp_point(self, sim: ArmSim) -> np.ndarray:
        """Where the TCP closes the fingers: the body's centre (a little lower, for a firm grip)."""
        p = sim.body_pos(self.body)
        return np.array([p[0], p[1], max(p[2], self.half) - 0.002])

    def holding(self) -> bool:
        """Whether the expert means to be holding the body now (lifting, or carrying it after the lift)."""
        return self.phase in ("lift", "after")

    def act(self, sim: ArmSim) -> np.ndarray:
        tcp = sim.tcp_pos()
        if self.holding() and np.all(sim.gripper_qpos() < self.EMPTY_GRIP):
            self.restart()  # the body slipped out: grasp it again from where it lies
        if self.phase == "approach":
            target = self.grasp_point(sim) + np.array([0.0, 0.0, self.CLEARANCE])
            dist = float(np.linalg.norm(target[:2] - tcp[:2]))
            if dist < self.ALIGN_TOL and tcp[2] < target[2] + 0.02:
                self.phase = "descend"
            else:
                if self.travel_z is not None and dist > self.NEAR:
                    target[2] = max(target[2], self.travel_z)
                return move_action(sim, target, gripper=-1.0, gain=self.GAIN)
        if self.phase == "descend":
            target = self.grasp_point(sim)
            if abs(target[2] - tcp[2]) < 0.006 and np.linalg.norm(target[:2] - tcp[:2]) < self.ALIGN_TOL:
                self.phase = "close"
                self.hold = target  # hold still while closing (tracking the body would chase it)
            else:
                return move_action(sim, target, gripper=-1.0, gain=self.GAIN)
        if self.phase == "close":
            self.count += 1
            if self.count > self.CLOSE_STEPS:
                self.phase = "lift"
            else:
                return move_action(sim, self.hold, gripper=1.0)
        if self.phase == "lift":
            if tcp[2] < self.lift_to - 0.01:
                return self.lift_action(sim)
            self.phase = "after"
        return self.after_lift(sim)

    def restart(self) -> None:
        """Go back to the approach (subclasses reset their own stages too)."""
        self.phase = "approach"
        self.count = 0

    def lift_action(self, sim: ArmSim) -> np.ndarray:
        """The action while lifting; here: straight up."""
        tcp = sim.tcp_pos()
        return move_action(sim, np.array([tcp[0], tcp[1], self.lift_to]), gripper=1.0, gain=self.GAIN)

    def after_lift(self, sim: ArmSim) -> np.ndarray:
        """The action once the body is lifted; here: hold still with the gripper closed."""
        return move_action(sim, sim.tcp_pos(), gripper=1.0)
