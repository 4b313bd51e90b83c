"""One ManiSkill3 task (SAPIEN 3, CPU physics, one env per instance) wrapped to our env contract.

Our `sims.vector.SubprocVectorEnv` vectorises it like the MuJoCo arm: each worker holds a few of these (on a GPU,
`sims.maniskill.batched` runs N sub-envs in one ManiSkill env through the functions shared here). Mapping:

* cameras: ManiSkill's ``base_camera`` -> ``agentview``; ``wrist`` is a camera we mount on ``panda_hand`` where
  the ``panda_wristcam`` robot has its RealSense (tasks built for plain ``panda`` keep their scene set-up). Both
  are rendered at ``image_size`` only when an observation is returned (once per `step_chunk`), not every step.
* state: float32 (8,): TCP position in the world frame (m, 3), TCP orientation as axis-angle (rad, 3), the two
  finger joint positions (m, 2).
* action: float32 (7,) in [-1, 1] through ManiSkill's ``pd_ee_delta_pose`` controller (per control step at 20 Hz:
  +-0.1 m translation in the robot-root frame; rotation an axis-angle of 0.1 rad per unit about root-aligned axes at
  the TCP, norm capped at 0.1 rad); see `to_maniskill_action` for the conversion (ManiSkill's rotation is Euler
  angles with a flipped sign; its gripper is +1 open, ours -1 open, +1 closed).
* success: the task's own ``info["success"]``; ``terminated`` on success, ``truncated`` at ``max_episode_steps``.
* expert: ManiSkill's motion-planning solution for the task (mplib), run once per episode in a second, camera-less
  copy of the task under joint-position control; its TCP path is then tracked with end-effector deltas
  (`sims.maniskill.expert`).

Importing this module sets up the Vulkan driver (`sims.maniskill.vulkan`) before sapien is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from sims.maniskill.vulkan import use_local_vulkan
from vla_rl.availability import require
from vla_rl.envs import ACTION_DIM, CAMERAS
from vla_rl.envs.contract import ChunkStepping
from vla_rl.registry import resolve_entry_point

STATE_DIM = 8
ROT_SCALE = 0.1  # rad per unit rotation action (pd_ee_delta_pose's rot bound)
CONTROL_MODE = "pd_ee_delta_pose"
CAMERA_NAMES = {"agentview": "base_camera", "wrist": "hand_camera"}
# Where panda_wristcam's camera sits on panda_hand (its URDF's fixed joints): position (m) and rpy (rad).
_WRIST_XYZ, _WRIST_RPY = (0.035, 0.02, 0.0475), (0.0, -np.pi / 2, np.pi)
_WRIST_FOV = np.pi / 2


@dataclass(frozen=True)
class TaskInfo:
    """What we add to a ManiSkill task: instructions, the motion-planning solution (``module:function``) and the
    attribute of the actor that solution carries once grasped (``held``: the expert then tracks that object's planned
    pose, not the TCP's; see `sims.maniskill.expert`)."""

    instructions: tuple[str, ...]
    solution: str | None = None
    held: str | None = None
    entry_point: str | None = None  # a task of ours (``module:Class``), not in ManiSkill's registry
    expert: str | None = None  # a scripted expert class (``module:Class``, built on the env) instead of the planner


_SOLUTIONS = "mani_skill.examples.motionplanning.panda.solutions"
TASKS: dict[str, TaskInfo] = {
    "PickCube-v1": TaskInfo(("pick up the red cube and move it to the green target",
                             "lift the red cube to the goal"), f"{_SOLUTIONS}:solvePickCube"),
    "PushCube-v1": TaskInfo(("push the cube to the red and white target",
                             "push the blue cube onto the goal region"), f"{_SOLUTIONS}:solvePushCube"),
    "StackCube-v1": TaskInfo(("stack the red cube on the green cube",
                              "put the red cube on top of the green one"), f"{_SOLUTIONS}:solveStackCube", "cubeA"),
    "PegInsertionSide-v1": TaskInfo(("insert the peg into the hole in the box",
                                     "put the peg into the box's hole from the side"),
                                    f"{_SOLUTIONS}:solvePegInsertionSide", "peg"),
    "PullCube-v1": TaskInfo(("pull the cube back to the red and white target",
                             "pull the blue cube toward the robot onto the goal"), f"{_SOLUTIONS}:solvePullCube"),
    "OpenDrawer-v1": TaskInfo(("open the drawer", "pull the drawer open by its blue handle"),
                              entry_point="sims.maniskill.drawer:OpenDrawerEnv",
                              expert="sims.maniskill.drawer:DrawerExpert"),
}


def _import_mani_skill() -> Any:
    """Set up Vulkan, then import mani_skill (registering its tasks); clear errors for either missing."""
    use_local_vulkan()
    require("sapien")
    require("mani_skill")
    import mani_skill.envs  # noqa: F401  (registers the tasks)
    from mani_skill.utils.registration import REGISTERED_ENVS

    return REGISTERED_ENVS


def task_class(task: str, wrist: bool) -> type:
    """ManiSkill's class for ``task``; with ``wrist``, a subclass that adds our wrist camera."""
    registered = _import_mani_skill()
    info = TASKS.get(task)
    if info is not None and info.entry_point:
        cls = resolve_entry_point(info.entry_point)
    elif task in registered:
        cls = registered[task].cls
    else:
        raise ValueError(f"unknown ManiSkill task {task!r}; wrapped here: {sorted(TASKS)}")
    return _with_wrist_camera(cls) if wrist else cls


def _with_wrist_camera(cls: type) -> type:
    import sapien
    from mani_skill.sensors.camera import CameraConfig
    from transforms3d.euler import euler2quat

    wrist_pose = sapien.Pose(p=list(_WRIST_XYZ), q=euler2quat(*_WRIST_RPY, axes="sxyz"))

    class WithWrist(cls):  # type: ignore[misc, valid-type]
        @property
        def _default_sensor_configs(self):  # noqa: ANN202  (ManiSkill's hook)
            base = super()._default_sensor_configs
            configs = list(base.values()) if isinstance(base, dict) else list(base) if isinstance(
                base, list | tuple) else [base]
            ref = configs[0]
            return [*configs, CameraConfig("hand_camera", wrist_pose, ref.width, ref.height, _WRIST_FOV, 0.01, 100,
                                           mount=self.agent.robot.links_map["panda_hand"])]

    WithWrist.__name__ = WithWrist.__qualname__ = f"{cls.__name__}WithWrist"
    return WithWrist


def to_maniskill_action(action: np.ndarray) -> np.ndarray:
    """Our action (7,) -> ``pd_ee_delta_pose``'s normalised action (7,).

    ManiSkill 3.0.1 reads the rotation as intrinsic XYZ Euler angles times ``rot_lower`` (-0.1 rad: the sign is
    flipped) after scaling the 3-vector down to norm 1 if longer; ours is an axis-angle of 0.1 rad per unit (the
    same norm cap applies). The gripper's sign is flipped too (ours: +1 closed)."""
    from transforms3d.axangles import axangle2mat
    from transforms3d.euler import mat2euler

    out = np.array(action, dtype=np.float32, copy=True)
    rotvec = out[3:6].astype(np.float64) * ROT_SCALE
    angle = float(np.linalg.norm(rotvec))
    if angle > 1e-12:
        euler = np.asarray(mat2euler(axangle2mat(rotvec / angle, angle), axes="rxyz"))
        out[3:6] = -euler / ROT_SCALE
    out[6] = -out[6]
    return out


def check_task(task: str, cameras: tuple[str, ...]) -> None:
    """Refuse a task we do not wrap or a camera we do not render, naming the valid ones."""
    unknown = set(cameras) - set(CAMERAS)
    if unknown:
        raise ValueError(f"unknown cameras {sorted(unknown)}; valid: {list(CAMERAS)}")
    if task not in TASKS:
        raise ValueError(f"ManiSkill task {task!r} is not wrapped; valid: {sorted(TASKS)}")


def build_task(task: str, cameras: tuple[str, ...], image_size: int, num_envs: int, sim_backend: str) -> Any:
    """ManiSkill's env for ``task`` holding ``num_envs`` sub-envs on ``sim_backend`` (``cpu``: one sub-env;
    ``gpu``: PhysX CUDA, any number), state observations, ``pd_ee_delta_pose``, cameras ``image_size`` px square."""
    cls = task_class(task, wrist="wrist" in cameras)
    return cls(num_envs=num_envs, obs_mode="state", control_mode=CONTROL_MODE, sim_backend=sim_backend,
               render_mode=None, robot_uids="panda", sensor_configs={"width": image_size, "height": image_size})


def spaces(cameras: tuple[str, ...], image_size: int) -> tuple[gym.spaces.Dict, gym.spaces.Box]:
    """One env's observation space (uint8 (S, S, 3) per camera, float32 (8,) state) and action space (7,)."""
    img = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
    obs = gym.spaces.Dict({**{c: img for c in cameras},
                           "state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)})
    return obs, gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)


def choose_instruction(rng: np.random.Generator, instructions: tuple[str, ...]) -> str:
    """The episode's instruction, drawn by the env's seeded generator."""
    return instructions[int(rng.integers(len(instructions)))]


def render_cameras(ms: Any, cameras: tuple[str, ...], show_goal: bool) -> dict[str, np.ndarray]:
    """Render ``cameras`` of every sub-env of ``ms``: uint8 (N, S, S, 3) each. The task's goal markers are hidden,
    as ManiSkill's own observations do, unless ``show_goal``."""
    for obj in ms._hidden_objects:
        obj.show_visual() if show_goal else obj.hide_visual()
    ms.scene.update_render(update_sensors=True, update_human_render_cameras=False)
    ms.capture_sensor_data()
    sensors = ms.scene.sensors
    out = {}
    for c in cameras:
        rgb = sensors[CAMERA_NAMES[c]].get_obs(rgb=True, depth=False, position=False, segmentation=False)["rgb"]
        out[c] = rgb.cpu().numpy()
    return out


def proprio_rows(ms: Any) -> np.ndarray:
    """float32 (N, 8), one row per sub-env of ``ms``: TCP position (m), TCP axis-angle (rad), finger positions (m)."""
    from transforms3d.quaternions import quat2axangle

    raw = ms.agent.tcp.pose.raw_pose.cpu().numpy().astype(np.float64)
    fingers = ms.agent.robot.get_qpos()[:, -2:].cpu().numpy()
    rows = []
    for pose, f in zip(raw, fingers, strict=True):
        axis, angle = quat2axangle(pose[3:])
        rows.append(np.concatenate([pose[:3], axis * angle, f]).astype(np.float32))
    return np.stack(rows)


class ManiSkillEnv(ChunkStepping, gym.Env):
    """One ManiSkill3 task; see the module docstring for the observation, action and success mapping.

    Observation: ``{"agentview": uint8 (S, S, 3), "wrist": uint8 (S, S, 3), "state": float32 (8,)}``.

    Args:
        task: the ManiSkill id (``PickCube-v1``), one of `TASKS`.
        max_episode_steps: control steps (20 Hz) before the episode is truncated.
        image_size: camera width and height (px). cameras: which of ``agentview``, ``wrist`` are rendered.
        reconfigure: rebuild the scene at every reset, for tasks that draw object shapes when the scene is built
            (PegInsertionSide's peg and hole sizes), so the initial state is a function of the seed alone.
        show_goal: render the task's goal markers, which ManiSkill hides from its cameras (PickCube's green goal
            sphere): its own policies read the goal's position from the state, ours see only pixels and proprio.
        task_id: the registered id, for records.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, task: str, max_episode_steps: int = 50, image_size: int = 128,
                 cameras: tuple[str, ...] = CAMERAS, reconfigure: bool = False, show_goal: bool = False,
                 task_id: str = "", render_mode: str | None = "rgb_array") -> None:
        check_task(task, cameras)
        self.task, self.task_id, self.reconfigure, self.show_goal = task, task_id, reconfigure, show_goal
        self.cameras, self.image_size, self.render_mode = tuple(cameras), int(image_size), render_mode
        self.max_steps = int(max_episode_steps)
        self.ms = build_task(task, self.cameras, self.image_size, num_envs=1, sim_backend="cpu")
        self.observation_space, self.action_space = spaces(self.cameras, self.image_size)
        self.instructions = TASKS[task].instructions
        self.instruction = ""
        self.elapsed = 0
        self.seed_used: int | None = None
        self._done = False
        self._expert: Any = None

    # ---- Gymnasium API ----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.seed_used = seed
        self.ms.reset(seed=seed, options={"reconfigure": self.reconfigure})
        self.instruction = choose_instruction(self.np_random, self.instructions)
        self.elapsed = 0
        self._done = False
        if self._expert is not None:
            self._expert.forget()
        return self._obs(), {"instruction": self.instruction, "success": False}

    def _control(self, action: np.ndarray) -> bool:
        """One control step of ``action`` (7,) through ``pd_ee_delta_pose``; True when the task's success holds."""
        _, _, _, _, info = self.ms.step(to_maniskill_action(action)[None])
        return bool(np.asarray(info["success"]).reshape(-1)[0])

    def render(self) -> np.ndarray:
        return self._images()[self.cameras[0]]

    def close(self) -> None:
        if self._expert is not None:
            self._expert.close()
            self._expert = None
        if getattr(self, "ms", None) is not None:
            self.ms.close()
            self.ms = None

    # ---- extras -----------------------------------------------------------------------------
    def expert_action(self) -> np.ndarray:
        """The expert's next action (7,) for the current step: the task's scripted expert, or the motion planner
        (which plans on the first call of an episode; see `sims.maniskill.expert`).

        Raises:
            ValueError: the task has no motion-planning solution.
        """
        if self._expert is None:
            from sims.maniskill.expert import PlannerExpert

            scripted = TASKS[self.task].expert
            self._expert = resolve_entry_point(scripted)(self) if scripted else PlannerExpert(self)
        return self._expert.act()

    def render_into(self, out: dict[str, np.ndarray]) -> None:
        """Render every camera into preallocated uint8 (S, S, 3) arrays, keyed by camera."""
        for c, img in self._images().items():
            out[c][...] = img

    def get_state(self) -> np.ndarray:
        """The whole simulation state (ManiSkill's flat vector: every actor's and articulation's pose, velocity)."""
        return self.ms.get_state()[0].cpu().numpy()

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The TCP's world position (3,) m and quaternion (4,) wxyz."""
        raw = self.ms.agent.tcp.pose.raw_pose[0].cpu().numpy().astype(np.float64)
        return raw[:3], raw[3:]

    def actor_pose(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The world position (3,) m and quaternion (4,) wxyz of the task's actor attribute ``name`` (``cubeA``)."""
        raw = getattr(self.ms, name).pose.raw_pose[0].cpu().numpy().astype(np.float64)
        return raw[:3], raw[3:]

    def proprio(self) -> np.ndarray:
        """float32 (8,): TCP position (m), TCP axis-angle (rad), finger positions (m)."""
        return proprio_rows(self.ms)[0]

    def _images(self) -> dict[str, np.ndarray]:
        return {c: rows[0] for c, rows in render_cameras(self.ms, self.cameras, self.show_goal).items()}

    def _obs(self) -> dict[str, np.ndarray]:
        obs = self._images()
        obs["state"] = self.proprio()
        return obs
