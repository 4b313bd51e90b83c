"""One task of one LIBERO suite (robosuite 1.4's Panda under LIBERO's BDDL scenes) as a Gymnasium env to our
contract, so the vector env (`sims.vector.SubprocVectorEnv`) runs it like the native MuJoCo arm.

Conventions, chosen to match how OpenVLA, OpenVLA-OFT and SimpleVLA-RL evaluate on LIBERO:

* Cameras: ``agentview`` (LIBERO's ``agentview``) and ``wrist`` (``robot0_eye_in_hand``), square, rendered
  offscreen and rotated 180 degrees (``[::-1, ::-1]``): robosuite renders in OpenGL's bottom-up row order and
  the peers train and evaluate on the rotated frames.
* State ``float32 (8,)``: end-effector position (3, m, robot base frame as robosuite reports it), orientation as
  axis-angle (3, rad), the two finger joint positions (2, m).
* Actions ``float32 (7,)`` in [-1, 1] straight to LIBERO's OSC_POSE controller (delta position, delta axis-angle;
  robosuite scales them to at most 5 cm and 0.5 rad per step) and the gripper, whose sign convention is ours
  (-1 open, +1 closed: +1 drives the fingers shut, measured in the tests).
* Success: LIBERO's own ``check_success()`` (the BDDL goal predicates) after every control step.
* Episodes: after each reset the arm holds still for ``settle_steps`` (10) steps with the gripper open while the
  objects settle, as the peers do; those steps are not counted. Then at most ``max_episode_steps`` control steps
  (the peers' limits, `SUITES`).
* Instruction: the task's language (``Task.language``, what the peers prompt with).

Seeds (`initial_state`):

* a ``test`` split seed ``2_000_000 + i`` (``i < 50``) resets to LIBERO's official init state ``i`` of the task:
  the states every LIBERO paper evaluates on, so our test figures are theirs;
* any other seed (``train``, ``val``) resets to a fresh placement drawn by LIBERO's own samplers (the BDDL
  regions) from a numpy seed derived from ours, so RL and model selection never see the official states (the
  placements are continuous: a draw equal to an official state has probability zero; the tests check the
  distance).

An official init state holds the MuJoCo state (robot, movable objects), not the fixtures (cabinets, stoves,
racks): LIBERO places those in the model at every reset, from numpy's global RNG, up to ~2 cm apart between
resets, in its own evaluation too. Here they are drawn from the seed as well (`placement_seed`), so every seed,
test seeds included, gives one scene: an env's initial state is a pure function of its seed.
"""

from __future__ import annotations

import importlib
import os
from functools import cached_property
from typing import Any

import gymnasium as gym
import numpy as np

from vla_rl.availability import require
from vla_rl.envs import ACTION_DIM, CAMERAS
from vla_rl.envs.contract import ChunkStepping
from vla_rl.splits import SPLITS

STATE_DIM = 8
NUM_INIT_STATES = 50  # official init states per task (LIBERO's *.pruned_init files)
SETTLE_STEPS = 10
# suite short name -> (LIBERO benchmark name, step limit the peers use: OpenVLA / SimpleVLA-RL's max_steps)
SUITES: dict[str, tuple[str, int]] = {
    "spatial": ("libero_spatial", 220),
    "object": ("libero_object", 280),
    "goal": ("libero_goal", 300),
    "10": ("libero_10", 520),
    "90": ("libero_90", 400),
}
_CAMERA_NAMES = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}  # ours -> robosuite's
_OPEN = np.array([0, 0, 0, 0, 0, 0, -1], np.float64)  # hold still, gripper open (the settle action)
_PLACEMENT_SALT = 0x11BE20  # mixed into our seed so placement draws never reuse LIBERO's own small seeds


def _libero(submodule: str = "") -> Any:
    """Import ``libero.libero`` (or its ``submodule``) after pointing it at our config (without one it prompts on
    stdin)."""
    from sims.libero.setup import config_dir, point_config

    require("libero")  # names `make install-libero` when absent
    point_config()
    if not (config_dir() / "config.yaml").exists():
        raise FileNotFoundError(f"no LIBERO config in {config_dir()}; run: make install-libero "
                                "(or python -m sims.libero.setup)")
    return importlib.import_module("libero.libero" + (f".{submodule}" if submodule else ""))


def official_index(seed: int) -> int | None:
    """The official init state a seed resets to (``test`` seeds), or None for a sampled placement."""
    test = SPLITS["test"]
    if seed not in test:
        return None
    i = seed - test.start
    if i >= NUM_INIT_STATES:
        raise ValueError(f"test seed {seed} is init state {i}, but LIBERO has {NUM_INIT_STATES} per task: use "
                         f"test seeds {test.start}..{test.start + NUM_INIT_STATES - 1}")
    return i


def placement_seed(seed: int) -> int:
    """The numpy global seed LIBERO's placement samplers draw from for our (non-test) ``seed``."""
    return int(np.random.SeedSequence([seed, _PLACEMENT_SALT]).generate_state(1)[0])


class LiberoEnv(ChunkStepping, gym.Env):
    """One LIBERO task; see the module docstring for conventions.

    Observation: ``{"agentview": uint8 (S, S, 3), "wrist": uint8 (S, S, 3), "state": float32 (8,)}`` for the
    chosen ``cameras``. Reward 1.0 on the step the task succeeds; ``terminated`` on success, ``truncated`` at
    ``max_episode_steps``.

    Args:
        suite: ``spatial``, ``object``, ``goal``, ``10`` or ``90``. task_index: the task within the suite
            (LIBERO's task order 0). max_episode_steps: control steps per episode (the suite's limit by default).
        image_size, cameras: what is rendered. settle_steps: still steps after each reset, not counted.
        task_id: the registered id, for records.

    The robosuite env is built on the first `reset` (building takes ~5 s, 12-19 s the first time in a process),
    so reading ``instructions`` is cheap.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, suite: str, task_index: int, max_episode_steps: int | None = None, image_size: int = 128,
                 cameras: tuple[str, ...] = CAMERAS, settle_steps: int = SETTLE_STEPS, task_id: str = "",
                 render_mode: str | None = "rgb_array") -> None:
        if suite not in SUITES:
            raise ValueError(f"unknown LIBERO suite {suite!r}; valid: {', '.join(SUITES)}")
        unknown = set(cameras) - set(CAMERAS)
        if unknown:
            raise ValueError(f"unknown cameras {sorted(unknown)}; valid: {list(CAMERAS)}")
        self.benchmark_name, limit = SUITES[suite]
        suite_obj = _libero("benchmark").get_benchmark_dict()[self.benchmark_name]()
        if not 0 <= task_index < suite_obj.get_num_tasks():
            raise ValueError(f"{self.benchmark_name} has tasks 0..{suite_obj.get_num_tasks() - 1}, not {task_index}")
        self._suite, self.task_index = suite_obj, task_index
        self.task = suite_obj.get_task(task_index)
        self.task_id = task_id
        self.cameras = tuple(cameras)
        self.image_size = image_size
        self.render_mode = render_mode
        self.max_steps = int(max_episode_steps or limit)
        self.settle_steps = settle_steps
        img = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(
            {**{c: img for c in self.cameras}, "state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self.instructions = (self.task.language,)
        self.instruction = self.task.language
        self.elapsed = 0
        self.seed_used: int | None = None
        self._env: Any = None
        self._raw: dict[str, np.ndarray] = {}
        self._done = False

    # ---- LIBERO side --------------------------------------------------------------------------
    @property
    def bddl_file(self) -> str:
        lib = _libero()
        return os.path.join(lib.get_libero_path("bddl_files"), self.task.problem_folder, self.task.bddl_file)

    @cached_property
    def init_states(self) -> np.ndarray:
        """The task's official init states, float64 (50, D): flattened MuJoCo states."""
        return np.asarray(self._suite.get_task_init_states(self.task_index))

    def libero_env(self) -> Any:
        """The wrapped ``OffScreenRenderEnv`` (built on first use). Camera observations are off: `render_into`
        renders only when asked, once per chunk, the same pixels robosuite's camera observables give."""
        if self._env is None:
            self._env = _libero("envs").OffScreenRenderEnv(
                bddl_file_name=self.bddl_file, camera_heights=self.image_size, camera_widths=self.image_size,
                use_camera_obs=False, horizon=self.settle_steps + self.max_steps + 1)
        return self._env

    # ---- Gymnasium API ----------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(SPLITS["train"].stop))
        self.seed_used = seed
        env = self.libero_env()
        index = official_index(seed)
        env.seed(placement_seed(seed))  # LIBERO's samplers draw from numpy's global RNG
        self._raw = env.reset()
        if index is not None:
            self._raw = env.set_init_state(self.init_states[index])
        for _ in range(self.settle_steps):
            self._raw, *_ = env.step(_OPEN)
        self.elapsed = 0
        self._done = False
        return self._obs(), {"instruction": self.instruction, "success": False}

    def _control(self, action: np.ndarray) -> bool:
        """One control step of ``action`` (7,) through LIBERO's controller; True when its predicate holds after it."""
        env = self.libero_env()
        self._raw, *_ = env.step(action.astype(np.float64))
        return bool(env.check_success())

    def render(self) -> np.ndarray:
        return self.render_camera(self.cameras[0] if self.cameras else "agentview")

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    # ---- what the vector env reads -------------------------------------------------------------
    @property
    def sim(self) -> LiberoEnv:
        """The vector env reads proprioception as ``env.sim.proprio()``; this env is its own sim view."""
        return self

    def proprio(self) -> np.ndarray:
        """float32 (8,): end-effector position (3), axis-angle (3), finger joint positions (2)."""
        from robosuite.utils.transform_utils import quat2axisangle

        raw = self._raw
        return np.concatenate([raw["robot0_eef_pos"], quat2axisangle(raw["robot0_eef_quat"]),
                               raw["robot0_gripper_qpos"]]).astype(np.float32)

    def render_camera(self, camera: str) -> np.ndarray:
        """One camera, uint8 (S, S, 3), upright (rotated 180 degrees from robosuite's frame)."""
        frame = self.libero_env().sim.render(camera_name=_CAMERA_NAMES[camera], width=self.image_size,
                                             height=self.image_size)
        return np.ascontiguousarray(frame[::-1, ::-1])

    def render_into(self, out: dict[str, np.ndarray]) -> None:
        """Render every camera into preallocated uint8 (S, S, 3) arrays, keyed by camera."""
        for c in self.cameras:
            out[c][...] = self.render_camera(c)

    def check_success(self) -> bool:
        """LIBERO's own success predicate on the current state."""
        return bool(self.libero_env().check_success())

    def get_state(self) -> np.ndarray:
        """The flattened MuJoCo state (the format of LIBERO's init states), float64."""
        return np.asarray(self.libero_env().get_sim_state(), dtype=np.float64)

    def expert_action(self) -> np.ndarray:
        raise NotImplementedError("LIBERO has no scripted expert: use its human demonstrations (robomimic HDF5) "
                                  "through the HDF5 importer")

    def _obs(self) -> dict[str, np.ndarray]:
        obs = {c: self.render_camera(c) for c in self.cameras}
        obs["state"] = self.proprio()
        return obs

