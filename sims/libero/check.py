"""Our LIBERO env against LIBERO's own, state by state: the checks the tests run on a few tasks and
``bench/libero_sweep.py`` on every task of the four suites.

For each official init state asked for, both envs reset to it (with the same fixture placement: LIBERO draws
it at every reset, it is not part of an init state) and settle the same way, then move the arm up
while closing the gripper. Compared at every step: the full MuJoCo state (bit for bit), the images (ours must be
LIBERO's renders of the same cameras at the same instant, rotated 180 degrees), the success predicate; and our
images must be non-blank and change as the arm moves.

``obs_image_lag``: the mean absolute pixel difference to the camera images in LIBERO's step observations, which
robosuite samples one physics substep (of 25) before the control step ends, not at its end (0 while nothing moves;
measured on the proprio too: 0.4 mm from the end-of-step end-effector position when a step moves it 10 mm). Our
images show the state the step ended in.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from sims.libero.env import _OPEN, CAMERAS, LiberoEnv, _libero, placement_seed
from vla_rl.splits import SPLITS

_RAW_CAMERAS = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}
_OBS_KEYS = {c: f"{name}_image" for c, name in _RAW_CAMERAS.items()}
MOVE = np.array([0, 0, 1, 0, 0, 0, 1], np.float32)  # up, gripper closing
BLANK_STD = 5.0  # a camera image with a lower pixel std is called blank
CHANGED = 1.0  # mean absolute pixel change that counts as "the image changed"


def reference_env(env: LiberoEnv) -> Any:
    """LIBERO's own ``OffScreenRenderEnv`` for the same task, with its default camera observations on."""
    return _libero("envs").OffScreenRenderEnv(bddl_file_name=env.bddl_file, camera_heights=env.image_size,
                                              camera_widths=env.image_size)


def check_state(env: LiberoEnv, ref: Any, index: int, move_steps: int = 5) -> dict[str, Any]:
    """Reset both envs to official init state ``index`` and move; returns what was compared (bools, figures)."""
    seed = SPLITS["test"].start + index
    obs, _ = env.reset(seed=seed)
    ref.seed(placement_seed(seed))  # the same fixture placement (not part of an init state)
    ref.reset()
    raw = ref.set_init_state(env.init_states[index])
    for _ in range(env.settle_steps):
        raw, *_ = ref.step(_OPEN)
    rec: dict[str, Any] = {"index": index, "state_equal": [], "images_equal": [], "success_equal": [],
                           "success": [], "obs_image_lag": []}

    def compare(obs: dict[str, np.ndarray], raw: dict[str, np.ndarray], success: bool) -> None:
        rec["state_equal"].append(bool(np.array_equal(env.get_state(), ref.get_sim_state())))
        theirs_now = {c: ref.sim.render(camera_name=_RAW_CAMERAS[c], width=env.image_size,
                                        height=env.image_size)[::-1, ::-1] for c in CAMERAS}
        rec["images_equal"].append(all(np.array_equal(obs[c], theirs_now[c]) for c in CAMERAS))
        rec["obs_image_lag"].append(max(float(np.abs(obs[c].astype(int) - raw[_OBS_KEYS[c]][::-1, ::-1]).mean())
                                        for c in CAMERAS))
        theirs = bool(ref.check_success())
        rec["success_equal"].append(success == theirs)
        rec["success"].append(theirs)

    compare(obs, raw, False)
    first = obs
    rec["image_std"] = {c: float(first[c].std()) for c in CAMERAS}
    for _ in range(move_steps):
        obs, _, success, _, _ = env.step(MOVE)
        raw, *_ = ref.step(MOVE.astype(np.float64))
        compare(obs, raw, success)
    rec["image_change"] = {c: float(np.abs(obs[c].astype(int) - first[c].astype(int)).mean()) for c in CAMERAS}
    rec["ok"] = (all(rec["state_equal"]) and all(rec["images_equal"]) and all(rec["success_equal"])
                 and min(rec["image_std"].values()) > BLANK_STD and min(rec["image_change"].values()) > CHANGED)
    return rec


def check_task(suite: str, task_index: int, indices: range | list[int], image_size: int = 64,
               move_steps: int = 5) -> dict[str, Any]:
    """`check_state` for each init state of ``indices`` on task ``task_index`` of ``suite``; with timings."""
    t0 = time.perf_counter()
    env = LiberoEnv(suite, task_index, image_size=image_size)
    env.libero_env()
    ref = reference_env(env)
    build_s = time.perf_counter() - t0
    try:
        states = [check_state(env, ref, i, move_steps) for i in indices]
    finally:
        env.close()
        ref.close()
    return {"id": f"libero/{suite}/{task_index}", "instruction": env.instruction, "build_s": round(build_s, 2),
            "total_s": round(time.perf_counter() - t0, 2), "ok": all(s["ok"] for s in states), "states": states}
