"""OpenDrawer: an articulated ManiSkill3 task built from boxes, with no downloaded assets.

ManiSkill's own articulated tasks for the Panda (OpenCabinetDrawer, TurnFaucet) load PartNet-Mobility models from the
Hugging Face Hub, which an offline machine cannot reach; its one articulation built in code (the ROBEL valve) needs
the D'Claw hand. This task builds its articulation with ManiSkill's articulation builder:

* a cabinet (fixed root link): a box shell open toward the robot, on the table;
* a drawer (child link) on a prismatic joint along the robot's -x axis, 0 to ``TRAVEL`` m, with a little friction
  and damping; a bar-shaped handle sticks out of its front toward the robot, along x, so the Panda's default
  top-down grasp closes its fingers across it.

Randomised per episode (the seed): the cabinet's x in [0.05, 0.15] m and y in [-0.1, 0.1] m, its yaw in
[-0.25, 0.25] rad; the drawer starts closed. Success: the drawer is open by at least ``SUCCESS_OPEN`` m.
`DrawerExpert` is a scripted expert from privileged state (the handle's pose): above the handle, down onto it,
close, pull along the drawer's axis.

The class is not registered with ManiSkill (nothing registers itself at import); `sims.maniskill.env.TASKS` names it
by entry point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sims.maniskill.vulkan import use_local_vulkan

use_local_vulkan()  # before sapien is imported

import numpy as np  # noqa: E402
import sapien  # noqa: E402
import torch  # noqa: E402
from mani_skill.envs.sapien_env import BaseEnv  # noqa: E402
from mani_skill.sensors.camera import CameraConfig  # noqa: E402
from mani_skill.utils import sapien_utils  # noqa: E402
from mani_skill.utils.scene_builder.table import TableSceneBuilder  # noqa: E402
from mani_skill.utils.structs import Pose  # noqa: E402
from transforms3d.euler import euler2quat  # noqa: E402

if TYPE_CHECKING:
    from sims.maniskill.env import ManiSkillEnv

TRAVEL = 0.2  # m the drawer slides out at most
SUCCESS_OPEN = 0.12  # m open for success
# Cabinet shell, half sizes (m): depth (x), width (y), height (z); wall thickness.
_HX, _HY, _HZ, _WALL = 0.12, 0.14, 0.07, 0.01
_HANDLE = (0.03, 0.008, 0.01)  # handle bar half sizes: along x (sticking out), y, z
# Colours (RGBA) of the shell, the drawer and the handle. Materials are made when the scene is built: creating one
# at import would start SAPIEN's renderer before ManiSkill picks its device.
_BODY, _DRAWER, _HANDLE_RGBA = (0.55, 0.4, 0.3, 1.0), (0.85, 0.8, 0.65, 1.0), (0.1, 0.3, 0.8, 1.0)


def _box(link: Any, center: tuple[float, float, float], half: tuple[float, float, float],
         rgba: tuple[float, ...]) -> None:
    pose = sapien.Pose(p=list(center))
    link.add_box_collision(pose, list(half))
    link.add_box_visual(pose, list(half), material=sapien.render.RenderMaterial(base_color=list(rgba)))


class OpenDrawerEnv(BaseEnv):
    """Open the drawer of a box cabinet on the table (see the module docstring)."""

    SUPPORTED_ROBOTS = ["panda"]
    SUPPORTED_REWARD_MODES = ("sparse", "none")

    def __init__(self, *args: Any, robot_uids: str = "panda", robot_init_qpos_noise: float = 0.02,
                 **kwargs: Any) -> None:
        self.robot_init_qpos_noise = robot_init_qpos_noise
        super().__init__(*args, robot_uids=robot_uids, **kwargs)

    @property
    def _default_sensor_configs(self):  # noqa: ANN202  (ManiSkill's hook)
        pose = sapien_utils.look_at(eye=[0.3, 0, 0.6], target=[-0.1, 0, 0.1])  # PickCube's base camera
        return [CameraConfig("base_camera", pose=pose, width=128, height=128, fov=np.pi / 2, near=0.01, far=100)]

    def _load_agent(self, options: dict) -> None:
        super()._load_agent(options, sapien.Pose(p=[-0.615, 0, 0]))

    def _load_scene(self, options: dict) -> None:
        self.table_scene = TableSceneBuilder(env=self, robot_init_qpos_noise=self.robot_init_qpos_noise)
        self.table_scene.build()
        self.cabinet = self._build_cabinet()
        self.drawer_joint = self.cabinet.active_joints[0]
        self.handle_link = self.cabinet.links_map["drawer"]

    def _build_cabinet(self) -> Any:
        """The shell (root, open at -x) and the drawer on its prismatic joint; frames: the root at the shell's
        centre on the table (z = _HZ), the drawer's origin at its front face's centre when closed."""
        b = self.scene.create_articulation_builder()
        b.initial_pose = sapien.Pose(p=[0.1, 0, _HZ])
        shell = b.create_link_builder()
        shell.set_name("cabinet")
        _box(shell, (0, 0, _HZ - _WALL / 2), (_HX, _HY, _WALL / 2), _BODY)  # top
        _box(shell, (0, 0, -_HZ + _WALL / 2), (_HX, _HY, _WALL / 2), _BODY)  # bottom
        _box(shell, (0, _HY - _WALL / 2, 0), (_HX, _WALL / 2, _HZ), _BODY)  # sides
        _box(shell, (0, -_HY + _WALL / 2, 0), (_HX, _WALL / 2, _HZ), _BODY)
        _box(shell, (_HX - _WALL / 2, 0, 0), (_WALL / 2, _HY, _HZ), _BODY)  # back
        drawer = b.create_link_builder(shell)
        drawer.set_name("drawer")
        dx, dy, dz = _HX - 1.5 * _WALL, _HY - 1.5 * _WALL, _HZ - 1.5 * _WALL  # inner box half sizes, with play
        _box(drawer, (-_WALL / 2, 0, 0), (_WALL / 2, _HY, _HZ), _DRAWER)  # front panel (covers the opening)
        _box(drawer, (dx, 0, -dz + _WALL / 2), (dx, dy, _WALL / 2), _DRAWER)  # bottom
        _box(drawer, (dx, dy - _WALL / 2, 0), (dx, _WALL / 2, dz), _DRAWER)  # sides
        _box(drawer, (dx, -dy + _WALL / 2, 0), (dx, _WALL / 2, dz), _DRAWER)
        _box(drawer, (2 * dx - _WALL / 2, 0, 0), (_WALL / 2, dy, dz), _DRAWER)  # back
        _box(drawer, (-_WALL - _HANDLE[0], 0, 0.02), _HANDLE, _HANDLE_RGBA)
        # The joint's x axis points out of the cabinet (-x of the root): positive travel opens the drawer.
        out = sapien.Pose(p=[-_HX, 0, 0], q=euler2quat(0, 0, np.pi))
        drawer.set_joint_name("drawer_slide")
        drawer.set_joint_properties("prismatic", limits=[[0.0, TRAVEL]], pose_in_parent=out,
                                    pose_in_child=sapien.Pose(q=euler2quat(0, 0, np.pi)), friction=0.1,
                                    damping=5.0)
        return b.build(name="cabinet", fix_root_link=True)

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict) -> None:
        with torch.device(self.device):
            n = len(env_idx)
            self.table_scene.initialize(env_idx)
            xyz = torch.zeros((n, 3))
            xyz[:, 0] = 0.05 + torch.rand(n) * 0.1
            xyz[:, 1] = torch.rand(n) * 0.2 - 0.1
            xyz[:, 2] = _HZ
            yaw = (torch.rand(n) * 0.5 - 0.25).numpy()
            quats = torch.tensor(np.stack([euler2quat(0, 0, y) for y in yaw]), dtype=torch.float32)
            self.cabinet.set_pose(Pose.create_from_pq(p=xyz, q=quats))
            self.cabinet.set_qpos(torch.zeros((n, 1)))
            self.cabinet.set_qvel(torch.zeros((n, 1)))

    def drawer_open(self) -> torch.Tensor:
        """How far the drawer is out (m), (num_envs,)."""
        return self.cabinet.get_qpos()[:, 0]

    def evaluate(self) -> dict[str, torch.Tensor]:
        opened = self.drawer_open()
        return {"success": opened >= SUCCESS_OPEN, "open": opened}

    def _get_obs_extra(self, info: dict) -> dict[str, Any]:
        return {"tcp_pose": self.agent.tcp.pose.raw_pose}

    def compute_sparse_reward(self, obs: Any, action: torch.Tensor, info: dict) -> torch.Tensor:
        return info["success"].float()

    def handle_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The handle bar's centre (3,) m in the world and the drawer's pull direction (3,) (unit, world), env 0."""
        link = self.handle_link.pose.raw_pose[0].cpu().numpy().astype(np.float64)
        from transforms3d.quaternions import quat2mat

        rot = quat2mat(link[3:])
        centre = link[:3] + rot @ np.array([-_WALL - _HANDLE[0], 0, 0.02])
        return centre, rot @ np.array([-1.0, 0.0, 0.0])


class DrawerExpert:
    """A scripted expert for `OpenDrawerEnv` through our EE-delta actions, closed loop on the measured TCP: above the
    handle's tip, down onto it, close, pull along the drawer's axis. The gripper is turned about the vertical by
    the cabinet's yaw so its fingers close across the bar."""

    MAX_STEP = 0.03  # m per control step toward a waypoint (the controller allows 0.1; slower tracks closer)
    PHASES = ("above", "down", "close", "pull")

    def __init__(self, env: ManiSkillEnv) -> None:
        self.env = env
        self.forget()

    def forget(self) -> None:
        """A new episode began."""
        self.phase, self.phase_steps, self.targets = 0, 0, None

    def _plan(self) -> dict[str, Any]:
        from transforms3d.quaternions import qmult

        centre, pull = self.env.ms.handle_pose()
        grasp = centre + pull * 0.015  # toward the bar's tip, away from the front panel
        yaw = float(np.arctan2(-pull[1], -pull[0]))
        _, rest_quat = self.env.tcp_pose()
        return {"above": grasp + [0, 0, 0.08], "down": grasp, "pull": grasp + pull * (SUCCESS_OPEN + 0.05),
                "quat": qmult(euler2quat(0, 0, yaw), rest_quat)}

    def act(self) -> np.ndarray:
        """The action (7,) in [-1, 1] for the current step."""
        from sims.maniskill.expert import delta_action

        if self.targets is None:
            self.targets = self._plan()
        pos, quat = self.env.tcp_pose()
        name = self.PHASES[self.phase]
        target = self.targets["down" if name == "close" else name]
        err = float(np.linalg.norm(target - pos))
        done = {"above": err < 0.01 or self.phase_steps >= 30, "down": err < 0.005 or self.phase_steps >= 20,
                "close": self.phase_steps >= 6, "pull": False}[name]
        self.phase_steps += 1
        if done:
            self.phase, self.phase_steps = self.phase + 1, 0
        step = target - pos
        if np.linalg.norm(step) > self.MAX_STEP:
            step = step / np.linalg.norm(step) * self.MAX_STEP
        gripper = 1.0 if name in ("close", "pull") else -1.0
        return delta_action(pos, quat, pos + step, self.targets["quat"], gripper)

    def close(self) -> None:
        """Nothing to release (no subprocess)."""
