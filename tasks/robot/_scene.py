"""Shared scene pieces for the stack, drawer and long-horizon tasks: primitive MJCF builders (cubes, an
open bin, a drawer cabinet), layout helpers, contact checks, and two scripted skills (pick-and-place,
drawer pulling) that the experts chain.

Static furniture (bin, cabinet) are mocap bodies so that a seed can place them at reset; their poses
live in ``data.mocap_pos`` / ``data.mocap_quat`` and so are part of ``ArmSim.get_state()``.
"""

from __future__ import annotations

import numpy as np

from sims.mujoco.sim import ArmSim
from sims.mujoco.task import move_action

# ---- geometry ---------------------------------------------------------------------------------
CUBE_HALF = 0.02  # m, half-size of a graspable cube

BIN_HALF = 0.085  # m, outer half-size of the bin (x and y)
BIN_WALL = 0.005  # m, half-thickness of the bin's walls and floor
BIN_HEIGHT = 0.055  # m, height of the bin's walls above the table
BIN_INNER = BIN_HALF - 2 * BIN_WALL  # m, inner half-size

# Cabinet, in its own frame: origin on the table at the centre of its footprint, front face at -x.
CAB_DEPTH = 0.12  # half-depth (x)
CAB_WIDTH = 0.14  # half-width (y)
CAB_HEIGHT = 0.12  # height of the top
DRAWER_RANGE = 0.2  # m, how far the drawer slides out
DRAWER_OPEN = 0.12  # m, the success threshold on the drawer's slide joint
HANDLE_Z = 0.08  # height of the handle bar's centre
HANDLE_GAP = (-CAB_DEPTH - 0.045, -CAB_DEPTH)  # x interval (cabinet frame) between drawer front and bar
HOOK_LOCAL = np.array([0.5 * (HANDLE_GAP[0] + HANDLE_GAP[1]), 0.0, HANDLE_Z - 0.002])  # where the TCP hooks
HANDLE_FRONT = HANDLE_GAP[0] - 0.016  # x of the handle bar's outer face (cabinet frame)

# Contact groups: the furniture collides with the gripper and with cubes but not with itself
# (contype 2 & conaffinity 1 never match between two furniture geoms), so the drawer slides freely.
FURNITURE = 'contype="2" conaffinity="1" friction="1 0.005 0.0001"'
OBJECT = 'contype="1" conaffinity="1" condim="4" friction="1 0.005 0.0001"'


def cube_xml(name: str, half: float, material: str) -> str:
    """A free-jointed cube ``name`` (joint ``{name}_joint``, geom ``{name}_geom``)."""
    return (
        f'<body name="{name}" pos="0.5 0 {half}"><freejoint name="{name}_joint"/>'
        f'<geom name="{name}_geom" type="box" size="{half} {half} {half}" material="{material}" '
        f'density="800" {OBJECT}/></body>'
    )


def bin_xml(name: str = "bin", material: str = "bin") -> str:
    """An open box (floor + 4 thin walls) as a mocap body ``name``; place it with `set_mocap`."""
    h, w, t = BIN_HALF, BIN_HEIGHT / 2, BIN_WALL
    geoms = [
        f'<geom type="box" pos="0 0 {t}" size="{h} {h} {t}"/>',
        f'<geom type="box" pos="{h - t} 0 {w}" size="{t} {h} {w}"/>',
        f'<geom type="box" pos="{-(h - t)} 0 {w}" size="{t} {h} {w}"/>',
        f'<geom type="box" pos="0 {h - t} {w}" size="{h - 2 * t} {t} {w}"/>',
        f'<geom type="box" pos="0 {-(h - t)} {w}" size="{h - 2 * t} {t} {w}"/>',
    ]
    geoms = [g.replace("<geom ", f'<geom material="{material}" {FURNITURE} ') for g in geoms]
    return f'<body name="{name}" mocap="true" pos="0.5 0.25 0">{"".join(geoms)}</body>'


def cabinet_xml(name: str = "cabinet") -> str:
    """A static cabinet shell (mocap body ``name``) holding a drawer on slide joint ``drawer_slide``.

    The drawer slides toward the cabinet's -x (its front); a bar handle stands off the drawer front on two
    posts, leaving a gap the closed fingers can hook into. Site ``drawer_hook`` marks the middle of that gap.
    """
    d, w, ht = CAB_DEPTH, CAB_WIDTH, CAB_HEIGHT
    t = 0.005
    f = f'material="cabinet" {FURNITURE}'
    shell = "".join([
        f'<geom type="box" pos="0 0 {ht - t}" size="{d} {w} {t}" {f}/>',
        f'<geom type="box" pos="0 0 {t + 0.001}" size="{d} {w} {t}" {f}/>',
        f'<geom type="box" pos="0 {w - t} {ht / 2}" size="{d} {t} {ht / 2}" {f}/>',
        f'<geom type="box" pos="0 {-(w - t)} {ht / 2}" size="{d} {t} {ht / 2}" {f}/>',
        f'<geom type="box" pos="{d - t} 0 {ht / 2}" size="{t} {w - 2 * t} {ht / 2}" {f}/>',
    ])
    g0, g1 = HANDLE_GAP
    post_half = (g1 - g0) / 2
    bar = 0.008
    dr = f'material="drawer" {FURNITURE}'
    hd = f'material="dark" {FURNITURE}'
    drawer = "".join([
        f'<joint name="drawer_slide" type="slide" axis="-1 0 0" range="0 {DRAWER_RANGE}" damping="6" '
        'armature="0.05" frictionloss="0.3"/>',
        '<inertial pos="0 0 0.06" mass="0.6" diaginertia="0.005 0.005 0.005"/>',
        f'<geom type="box" pos="{-d + 0.01} 0 {(ht - 0.012 + 0.017) / 2}" size="0.01 {w - 0.016} '
        f'{(ht - 0.012 - 0.017) / 2}" {dr}/>',
        f'<geom type="box" pos="0 0 0.02" size="{d - 0.02} {w - 0.02} 0.004" {dr}/>',
        f'<geom type="box" pos="0 {w - 0.02} 0.05" size="{d - 0.02} 0.003 0.03" {dr}/>',
        f'<geom type="box" pos="0 {-(w - 0.02)} 0.05" size="{d - 0.02} 0.003 0.03" {dr}/>',
        f'<geom type="box" pos="{d - 0.023} 0 0.05" size="0.003 {w - 0.02} 0.03" {dr}/>',
        f'<geom type="box" pos="{g0 + post_half} 0.055 {HANDLE_Z}" size="{post_half} 0.006 0.006" {hd}/>',
        f'<geom type="box" pos="{g0 + post_half} -0.055 {HANDLE_Z}" size="{post_half} 0.006 0.006" {hd}/>',
        f'<geom type="box" pos="{g0 - bar} 0 {HANDLE_Z}" size="{bar} 0.075 {bar}" {hd}/>',
        f'<site name="drawer_hook" pos="{HOOK_LOCAL[0]} {HOOK_LOCAL[1]} {HOOK_LOCAL[2]}" size="0.005" '
        'rgba="1 0 0 0" group="4"/>',
    ])
    return (f'<body name="{name}" mocap="true" pos="0.6 0 0">{shell}'
            f'<body name="drawer" pos="0 0 0">{drawer}</body></body>')


def materials_xml() -> str:
    """Extra materials used by these scenes."""
    return ('<material name="bin" rgba="0.55 0.58 0.62 1"/>\n'
            '<material name="cabinet" rgba="0.42 0.47 0.58 1"/>\n'
            '<material name="drawer" rgba="0.9 0.82 0.62 1"/>')


# ---- state helpers ----------------------------------------------------------------------------
def yaw_quat(yaw: float) -> np.ndarray:
    """Quaternion (w, x, y, z) for a rotation by ``yaw`` about world z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def quat_yaw(q: np.ndarray) -> float:
    """Yaw (rad) of a quaternion (w, x, y, z) that rotates about z only (or nearly so)."""
    w, x, y, z = q
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def set_mocap(sim: ArmSim, body: str, pos: np.ndarray, yaw: float = 0.0) -> None:
    """Place the mocap body ``body`` at ``pos`` (3,) turned by ``yaw`` about z."""
    mid = sim.model.body(body).mocapid[0]
    sim.data.mocap_pos[mid] = pos
    sim.data.mocap_quat[mid] = yaw_quat(yaw)


def mocap_pose(sim: ArmSim, body: str) -> tuple[np.ndarray, float]:
    """Position (3,) and yaw of the mocap body ``body``."""
    mid = sim.model.body(body).mocapid[0]
    return sim.data.mocap_pos[mid].copy(), quat_yaw(sim.data.mocap_quat[mid])


def free_linvel(sim: ArmSim, joint: str) -> np.ndarray:
    """World-frame linear velocity (3,) of a free joint."""
    return sim.data.joint(joint).qvel[:3].copy()


def _body_geoms(sim: ArmSim, body: str) -> set[int]:
    bid = sim.model.body(body).id
    return {int(g) for g in np.flatnonzero(sim.model.geom_bodyid == bid)}


def finger_contacts(sim: ArmSim, body: str) -> int:
    """How many fingers (0, 1 or 2) touch ``body``'s geoms."""
    obj = _body_geoms(sim, body)
    fingers = [_body_geoms(sim, "left_finger"), _body_geoms(sim, "right_finger")]
    touched = [False, False]
    d = sim.data
    for i in range(d.ncon):
        g1, g2 = int(d.contact[i].geom1), int(d.contact[i].geom2)
        for k, fg in enumerate(fingers):
            if (g1 in fg and g2 in obj) or (g2 in fg and g1 in obj):
                touched[k] = True
    return int(sum(touched))


def is_held(sim: ArmSim, body: str) -> bool:
    """Whether both fingers touch ``body`` (it is grasped)."""
    return finger_contacts(sim, body) == 2


def in_bin(sim: ArmSim, body: str, bin_body: str = "bin", margin: float = 0.005) -> bool:
    """Whether ``body``'s centre lies inside the bin's walls, below their top."""
    pos = sim.body_pos(body)
    bpos, byaw = mocap_pose(sim, bin_body)
    c, s = np.cos(byaw), np.sin(byaw)
    dx, dy = pos[0] - bpos[0], pos[1] - bpos[1]
    local = np.array([c * dx + s * dy, -s * dx + c * dy])
    return bool(np.all(np.abs(local) < BIN_INNER - margin) and pos[2] < bpos[2] + BIN_HEIGHT)


def drawer_opening(sim: ArmSim) -> float:
    """How far the drawer is pulled out (m)."""
    return sim.joint_qpos("drawer_slide")


def cabinet_footprint(pos: np.ndarray, yaw: float, front_extra: float = 0.0) -> np.ndarray:
    """Axis-aligned xy bounds [[xmin, xmax], [ymin, ymax]] of the cabinet (with its handle and, with
    ``front_extra``, that much more room in front of it)."""
    corners = np.array([[HANDLE_FRONT - front_extra, -CAB_WIDTH], [HANDLE_FRONT - front_extra, CAB_WIDTH],
                        [CAB_DEPTH, -CAB_WIDTH], [CAB_DEPTH, CAB_WIDTH]])
    c, s = np.cos(yaw), np.sin(yaw)
    world = corners @ np.array([[c, s], [-s, c]]) + pos[:2]
    return np.stack([world.min(0), world.max(0)], axis=1)


def boxes_apart(a: np.ndarray, b: np.ndarray, margin: float) -> bool:
    """Whether xy boxes ``a`` and ``b`` ([[xmin, xmax], [ymin, ymax]]) are at least ``margin`` apart."""
    return bool(a[0, 1] + margin <= b[0, 0] or b[0, 1] + margin <= a[0, 0]
                or a[1, 1] + margin <= b[1, 0] or b[1, 1] + margin <= a[1, 0])


def square(center: np.ndarray, half_x: float, half_y: float | None = None) -> np.ndarray:
    """xy box around ``center`` with half-extents ``half_x`` and ``half_y`` (defaults to ``half_x``)."""
    hy = half_x if half_y is None else half_y
    return np.array([[center[0] - half_x, center[0] + half_x], [center[1] - hy, center[1] + hy]])


# Room the gripper needs around a cube it grasps (xy half-extents about the cube's centre): the open fingers
# reach ~0.052 m to either side in y; the hand above them (0.095 m to either side in y) is 0.064 m above the
# table at the grasp, so furniture taller than that (the cabinet) must also clear the hand.
GRASP_HALF_X, GRASP_HALF_Y = 0.035, 0.065
HAND_HALF_X, HAND_HALF_Y = 0.035, 0.105


# ---- scripted skills --------------------------------------------------------------------------
class _PhaseSkill:
    """A scripted skill as a phase machine: ``phase`` names the current step, ``count`` the control
    steps spent in it; the skill is finished in phase ``"done"``."""

    def __init__(self, first_phase: str) -> None:
        self.phase = first_phase
        self.count = 0

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def _go(self, phase: str) -> None:
        self.phase, self.count = phase, 0


class PickPlace(_PhaseSkill):
    """Scripted pick-and-place of the free body ``obj`` (a cube of half-size ``half``).

    ``place_xy(sim)`` gives where the object's centre should end up, ``place_z(sim)`` the height of its
    centre when it is let go. Call `act` every control step until `done`; it regrasps after a slip.
    """

    CARRY_Z = 0.2  # TCP height while carrying
    ABOVE = 0.1  # approach height above the object

    def __init__(self, obj: str, half: float, place_xy, place_z) -> None:
        super().__init__("above")
        self.obj, self.half = obj, half
        self.place_xy, self.place_z = place_xy, place_z
        self.offset = np.zeros(3)  # TCP minus object centre while held

    def act(self, sim: ArmSim) -> np.ndarray:
        """The next action (7,)."""
        tcp, obj = sim.tcp_pos(), sim.body_pos(self.obj)
        self.count += 1
        p = self.phase
        if p == "above":
            target = obj + np.array([0.0, 0.0, self.ABOVE])
            target[2] = max(target[2], tcp[2]) if np.linalg.norm(tcp[:2] - obj[:2]) > 0.03 else target[2]
            if np.linalg.norm(target - tcp) < 0.015 or (self.count > 40 and np.linalg.norm(tcp[:2] - obj[:2]) < 0.01):
                self._go("descend")
            return move_action(sim, target, gripper=-1.0)
        if p == "descend":
            target = np.array([obj[0], obj[1], max(obj[2] - 0.004, 0.012)])
            if np.linalg.norm(target - tcp) < 0.006 or self.count > 25:
                self._go("close")
            return move_action(sim, target, gripper=-1.0)
        if p == "close":
            target = np.array([obj[0], obj[1], max(obj[2] - 0.004, 0.012)]) if self.count == 1 else tcp
            if self.count >= 6:
                self.offset = tcp - obj
                self._go("lift")
            return move_action(sim, target, gripper=1.0, gain=0.5)
        if self._slipped(sim, tcp, obj) and p in ("lift", "carry", "lower"):
            self._go("above")
            return move_action(sim, tcp + np.array([0.0, 0.0, 0.05]), gripper=-1.0)
        if p == "lift":
            target = np.array([tcp[0], tcp[1], self.CARRY_Z])
            if tcp[2] > self.CARRY_Z - 0.02:
                self._go("carry")
            # Lift gently at first: a full-speed start can shake the cube along the narrow finger pads.
            return move_action(sim, target, gripper=1.0, gain=0.5 if self.count <= 8 else 1.0)
        goal = np.asarray(self.place_xy(sim), dtype=float)
        off = tcp[:2] - obj[:2]
        if p == "carry":
            target = np.array([goal[0] + off[0], goal[1] + off[1], self.CARRY_Z])
            if np.linalg.norm(obj[:2] - goal) < 0.006 and np.linalg.norm(target - tcp) < 0.01:
                self._go("lower")
            return move_action(sim, target, gripper=1.0)
        if p == "lower":
            z_goal = self.place_z(sim)
            target = np.array([goal[0] + off[0], goal[1] + off[1], z_goal + (tcp[2] - obj[2])])
            if abs(obj[2] - z_goal) < 0.004 or self.count > 40:
                self._go("release")
            return move_action(sim, target, gripper=1.0, gain=0.6)
        if p == "release":
            if self.count >= 6:
                self._go("retreat")
            return move_action(sim, tcp, gripper=-1.0)
        if p == "retreat":
            target = np.array([tcp[0], tcp[1], obj[2] + 0.12])
            if tcp[2] > obj[2] + 0.08:
                self._go("done")
            return move_action(sim, target, gripper=-1.0)
        return move_action(sim, tcp, gripper=-1.0)

    def _slipped(self, sim: ArmSim, tcp: np.ndarray, obj: np.ndarray) -> bool:
        return bool(np.linalg.norm((tcp - obj) - self.offset) > 0.03 or sim.gripper_qpos().sum() < 0.01)


class PullDrawer(_PhaseSkill):
    """Scripted drawer opening: hook the closed fingers into the handle's gap and pull along the slide."""

    ABOVE = 0.1  # approach height above the hook point

    def __init__(self, target: float = 0.17) -> None:
        super().__init__("approach")
        self.target = target

    def act(self, sim: ArmSim) -> np.ndarray:
        """The next action (7,)."""
        tcp = sim.tcp_pos()
        hook = sim.site_pos("drawer_hook")
        _, yaw = mocap_pose(sim, "cabinet")
        pull = np.array([-np.cos(yaw), -np.sin(yaw), 0.0])
        self.count += 1
        p = self.phase
        if p == "approach":
            target = hook + np.array([0.0, 0.0, self.ABOVE])
            # Rise first if low, so the fingers pass over anything in the way.
            if tcp[2] < 0.14 and np.linalg.norm(tcp[:2] - hook[:2]) > 0.03:
                target = np.array([tcp[0], tcp[1], max(target[2], 0.2)])
            elif np.linalg.norm(target - tcp) < 0.012 or (
                    self.count > 60 and np.linalg.norm(tcp[:2] - hook[:2]) < 0.006):
                self._go("descend")
            return move_action(sim, target, gripper=1.0, yaw=yaw)
        if p == "descend":
            if np.linalg.norm(hook - tcp) < 0.008 or self.count > 30:
                self._go("pull")
            return move_action(sim, hook, gripper=1.0, yaw=yaw)
        if p == "pull":
            if drawer_opening(sim) >= self.target or self.count > 80:
                self._go("done")
            target = hook + 0.05 * pull
            return move_action(sim, target, gripper=1.0, gain=0.8, yaw=yaw)
        return move_action(sim, tcp, gripper=1.0, yaw=yaw)
