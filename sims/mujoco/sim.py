"""The arm simulation: one MuJoCo model + data, an end-effector delta controller, camera rendering.

`ArmSim` is what tasks and scripted experts see (privileged state); `sims.mujoco.env.ArmEnv` wraps it
in Gymnasium's API.
"""

from __future__ import annotations

import atexit
import hashlib

import mujoco
import numpy as np

from sims.mujoco.arm import (
    ARM_JOINTS,
    FINGER_OPEN,
    HOME_QPOS,
    JOINT_LIMITS,
    build_scene_xml,
)
from sims.mujoco.ik import IKParams, ik_step, rotation_error, site_jacobian  # noqa: F401 (tasks import rotation_error here)
from vla_rl.utils.rotations import quat_to_axis_angle

CONTROL_HZ = 20
POS_SCALE = 0.02  # m per control step at |action| = 1 (0.4 m/s)
ROT_SCALE = 0.1  # rad per control step at |action| = 1
# Where the tool centre point may be commanded (m, world frame); the table top is z = 0.
WORKSPACE = np.array([[0.15, 0.85], [-0.45, 0.45], [0.003, 0.55]])


SIM_IK = IKParams(pos_scale=POS_SCALE, rot_scale=ROT_SCALE, workspace=WORKSPACE, joint_limits=JOINT_LIMITS,
                  home=HOME_QPOS)


class ArmSim:
    """A MuJoCo arm scene with the task's objects.

    Args:
        objects_xml / assets_xml: the task's bodies and materials (see `build_scene_xml`).
        image_size: side of the square camera images.
        substeps: physics steps per control step (timestep 0.005 s x 10 = 20 Hz).
    """

    def __init__(self, objects_xml: str = "", assets_xml: str = "", image_size: int = 128,
                 substeps: int = 10) -> None:
        xml = build_scene_xml(objects_xml, assets_xml, image_size=image_size)
        self.model = mujoco.MjModel.from_xml_string(xml)
        self._scene_key = (hashlib.sha1(xml.encode()).hexdigest(), image_size)  # which renderer draws it
        self.data = mujoco.MjData(self.model)
        self.substeps = substeps
        self.image_size = image_size
        self._arm_qadr = np.array([self.model.joint(n).qposadr[0] for n in ARM_JOINTS])
        self._arm_dadr = np.array([self.model.joint(n).dofadr[0] for n in ARM_JOINTS])
        self._finger_qadr = np.array(
            [self.model.joint(n).qposadr[0] for n in ("finger_joint1", "finger_joint2")]
        )
        self._tcp = self.model.site("tcp").id
        self._fk_data: mujoco.MjData | None = None  # scratch state for tcp_rotmat_at
        self._cameras: dict[str, mujoco.MjvCamera] = {}
        self.target_rot = np.diag([1.0, -1.0, -1.0])  # gripper pointing down

    # ---- state ------------------------------------------------------------------------------
    def reset_arm(self, qpos: np.ndarray = HOME_QPOS) -> None:
        """Put the arm at ``qpos`` (7,), fingers open, at rest; then recompute kinematics."""
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._arm_qadr] = qpos
        self.data.qpos[self._finger_qadr] = FINGER_OPEN
        self.data.ctrl[:7] = qpos
        self.data.ctrl[7:9] = FINGER_OPEN
        mujoco.mj_forward(self.model, self.data)
        self.target_rot = self.tcp_rotmat().copy()

    def forward(self) -> None:
        mujoco.mj_forward(self.model, self.data)

    def tcp_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._tcp].copy()

    def tcp_rotmat(self) -> np.ndarray:
        return self.data.site_xmat[self._tcp].reshape(3, 3).copy()

    def gripper_qpos(self) -> np.ndarray:
        """Finger positions (2,), 0 closed .. 0.04 open each."""
        return self.data.qpos[self._finger_qadr].copy()

    def arm_qpos(self) -> np.ndarray:
        return self.data.qpos[self._arm_qadr].copy()

    def body_pos(self, name: str) -> np.ndarray:
        return self.data.body(name).xpos.copy()

    def body_quat(self, name: str) -> np.ndarray:
        return self.data.body(name).xquat.copy()

    def site_pos(self, name: str) -> np.ndarray:
        return self.data.site(name).xpos.copy()

    def joint_qpos(self, name: str) -> float:
        return float(self.data.joint(name).qpos[0])

    def set_joint_qpos(self, name: str, value: float) -> None:
        self.data.joint(name).qpos[0] = value

    def set_free_pose(self, joint: str, pos: np.ndarray, quat: np.ndarray | None = None) -> None:
        """Place a free-jointed body: position (3,), quaternion (w, x, y, z); zero velocity."""
        j = self.model.joint(joint)
        adr, dadr = j.qposadr[0], j.dofadr[0]
        self.data.qpos[adr : adr + 3] = pos
        self.data.qpos[adr + 3 : adr + 7] = quat if quat is not None else (1.0, 0.0, 0.0, 0.0)
        self.data.qvel[dadr : dadr + 6] = 0.0

    def proprio(self) -> np.ndarray:
        """float32 (8,): TCP position (3), TCP orientation as axis-angle (3), finger positions (2)."""
        q = np.zeros(4)
        mujoco.mju_mat2Quat(q, self.data.site_xmat[self._tcp])
        return np.concatenate([self.tcp_pos(), quat_to_axis_angle(q), self.gripper_qpos()]).astype(np.float32)

    def get_state(self) -> np.ndarray:
        """The full physics state (time, qpos, qvel, act, ...) as float64, for replay checks."""
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        out = np.empty(mujoco.mj_stateSize(self.model, spec))
        mujoco.mj_getState(self.model, self.data, out, spec)
        return out

    def set_state(self, state: np.ndarray) -> None:
        mujoco.mj_setState(self.model, self.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)

    # ---- control ----------------------------------------------------------------------------
    def apply_action(self, action: np.ndarray) -> None:
        """One 20 Hz control step. ``action`` float (7,) in [-1, 1]: dpos (3), drot (3), gripper (1).

        Differential IK (`sims.mujoco.ik.ik_step`: damped least squares, with a null-space pull to the home posture)
        turns the end-effector target into joint position targets for the servos.
        """
        self.apply_joint_targets(self.ik_target(action), (1.0 - float(action[6])) * 0.5 * FINGER_OPEN)

    def ik_target(self, action: np.ndarray) -> np.ndarray:
        """The arm's joint targets (7,) rad for ``action`` from the current state; advances the orientation target."""
        jac = site_jacobian(self.model, self.data, self._tcp, self._arm_dadr)
        target, self.target_rot = ik_step(action, self.tcp_pos(), self.tcp_rotmat(), jac, self.arm_qpos(),
                                          self.target_rot, SIM_IK)
        return target

    def apply_joint_targets(self, q_target: np.ndarray, opening: float) -> None:
        """One control step towards arm joint targets ``q_target`` (7,) rad, each finger opening to ``opening`` m.

        The servo targets ramp from the last ones over the first half of the substeps instead of jumping: a step
        change jerks the hand and makes a held object creep along the finger pads."""
        m, d = self.model, self.data
        d.ctrl[7:9] = opening
        start = d.ctrl[:7].copy()
        for k in range(1, self.substeps + 1):
            d.ctrl[:7] = start + (q_target - start) * min(1.0, 2.0 * k / self.substeps)
            mujoco.mj_step(m, d)

    def drive_joints(self, q_target: np.ndarray, opening: float) -> None:
        """A joint-space command from outside the sim's controller (the twin's joint_trajectory mode): step to
        ``q_target`` (7,) rad and ``opening`` m. The orientation target becomes the commanded joints' TCP
        orientation, so what reads it (a task's expert steering the yaw) sees what was commanded."""
        self.target_rot = self.tcp_rotmat_at(q_target)
        self.apply_joint_targets(q_target, opening)

    def tcp_rotmat_at(self, q: np.ndarray) -> np.ndarray:
        """The TCP rotation matrix (3, 3) with the arm at ``q`` (7,) rad; the sim's state is left as it is."""
        if self._fk_data is None:
            self._fk_data = mujoco.MjData(self.model)
        self._fk_data.qpos[self._arm_qadr] = q
        mujoco.mj_kinematics(self.model, self._fk_data)
        return self._fk_data.site_xmat[self._tcp].reshape(3, 3).copy()

    # ---- rendering --------------------------------------------------------------------------
    def render(self, camera: str, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 (H, W, 3) image from ``camera``; written into ``out`` when given. Drawn by the process's
        renderer for this scene (`shared_renderer`): this sim's model and data, that renderer's GL context."""
        cam = self._cameras.get(camera)
        if cam is None:
            cam = mujoco.MjvCamera()
            cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
            cam.fixedcamid = self.model.camera(camera).id
            self._cameras[camera] = cam
        r = shared_renderer(self._scene_key, self.model)
        mujoco.mjv_updateScene(self.model, self.data, _SCENE_OPTION, None, cam, mujoco.mjtCatBit.mjCAT_ALL, r.scene)
        return r.render(out=out)

    def close(self) -> None:
        """Nothing to free per sim: the renderer is the process's (`close_renderers`)."""


_SCENE_OPTION = mujoco.MjvOption()
_RENDERERS: dict[tuple[str, int], mujoco.Renderer] = {}


def shared_renderer(key: tuple[str, int], model: mujoco.MjModel) -> mujoco.Renderer:
    """The process's offscreen renderer for scene ``key`` (its XML's digest, image size), made on first use
    from ``model``. Every sim built from the same XML draws through it: a GL context and its uploaded assets
    are per scene, while geometry, poses and colours come from each sim's own model and data at
    `mujoco.mjv_updateScene`, so the pixels equal a renderer of its own (tested). A worker's envs of one task
    share one context instead of making one each (~37 ms per env on llvmpipe, stop 22)."""
    r = _RENDERERS.get(key)
    if r is None:
        first = not _RENDERERS
        r = _RENDERERS[key] = mujoco.Renderer(model, key[1], key[1])
        if first:  # registered after EGL's own exit hook (made with the first context), so run before it
            atexit.register(close_renderers)
    return r


def close_renderers() -> None:
    """Free the process's renderers (at exit, before EGL terminates its display). A display another library
    terminated first (robosuite's own EGL exit hook, with LIBERO in the process) has freed them already."""
    while _RENDERERS:
        try:
            _RENDERERS.popitem()[1].close()
        except Exception as e:  # EGL_NOT_INITIALIZED: nothing left to free
            if "EGL" not in type(e).__name__:
                raise
