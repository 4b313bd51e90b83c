"""Import robomimic / LIBERO HDF5 demonstrations into our episodes and LeRobot datasets.

Expected layout (robomimic's, which LIBERO follows)::

    data/                      attrs: LIBERO keeps "problem_info" (JSON with "language_instruction")
    data/demo_0/actions        (T, 7) float
    data/demo_0/obs/<key>      (T, ...) e.g. agentview_rgb / agentview_image (T, H, W, 3) uint8,
                               eye_in_hand_rgb / robot0_eye_in_hand_image, ee_pos (T, 3), ee_ori (T, 3),
                               gripper_states (T, 2), or robomimic's robot0_eef_pos / robot0_eef_quat /
                               robot0_gripper_qpos
    data/demo_0/dones          (T,) optional; the last step of a demo counts as success otherwise

State is rebuilt in our layout (8,): end-effector position (3), orientation as axis-angle (3) (a
``*_quat`` key (x, y, z, w) is converted), finger positions (2), from the first of these key sets found:
LIBERO ``ee_pos, ee_ori, gripper_states``; robomimic ``robot0_eef_pos, robot0_eef_quat,
robot0_gripper_qpos``; or pass ``state_keys`` to concatenate others.

``obs_after_action`` pairs each action with the observation before it in files that store, beside an action,
the observation its step returned (LIBERO's ``create_dataset.py`` does): the previous row's; the first action goes.
``drop_noops`` drops the steps the peers drop from LIBERO's demos (OpenVLA's regeneration of the LIBERO
datasets, which OpenVLA-OFT and SimpleVLA-RL train on): see `noop_mask`. The LIBERO-specific choices (image
orientation, which env task a file is) are `sims.libero.demos`'s.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vla_rl.data import DatasetError, Episode
from vla_rl.utils import rotations

CAMERA_KEYS: dict[str, tuple[str, ...]] = {
    "agentview": ("agentview_rgb", "agentview_image", "agentview"),
    "wrist": ("eye_in_hand_rgb", "robot0_eye_in_hand_image", "eye_in_hand_image", "wrist_image", "wrist"),
}
STATE_KEY_SETS: tuple[tuple[str, ...], ...] = (
    ("ee_pos", "ee_ori", "gripper_states"),  # LIBERO
    ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"),  # robomimic
)


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions in robomimic's order (x, y, z, w) -> float32 (..., 3) axis-angle (axis * angle,
    angle in [0, pi]); `vla_rl.utils.rotations.quat_to_axis_angle` after reordering to (w, x, y, z)."""
    q = np.asarray(q, dtype=np.float64)
    return rotations.quat_to_axis_angle(q[..., [3, 0, 1, 2]]).astype(np.float32)


NOOP_THRESHOLD = 1e-4  # OpenVLA's LIBERO regeneration: norm of the six motion dims below this is "no motion"


def noop_mask(actions: np.ndarray, threshold: float = NOOP_THRESHOLD) -> np.ndarray:
    """bool (T,): the no-op steps of one demo's actions (T, 7), as OpenVLA's LIBERO regeneration drops them.

    A step is a no-op when its motion (dims 0-5: translation, rotation) has L2 norm below ``threshold`` and its
    gripper command (dim 6) equals the last kept step's (while no step is kept yet: motion alone). A still step
    that opens or closes the gripper is kept. The last kept step's gripper command is always the previous step's
    (a dropped step repeats it), so the rule needs no loop.
    """
    a = np.asarray(actions, dtype=np.float64)
    still = np.linalg.norm(a[:, :6], axis=1) < threshold
    leading = np.cumprod(still).astype(bool)  # nothing kept yet
    same_gripper = np.r_[False, a[1:, 6] == a[:-1, 6]]
    return still & (leading | same_gripper)


def _demo_names(data: Any) -> list[str]:
    names = [k for k in data if re.fullmatch(r"demo_\d+", k)]
    return sorted(names, key=lambda k: int(k.split("_")[1]))


def _attr_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def find_instruction(path: Path, data: Any, demo: Any) -> str | None:
    """The language instruction of a demo: its own attrs, then LIBERO's ``problem_info``, then ``data``'s
    attrs, then a LIBERO-style file name (``put_the_bowl_on_the_plate_demo.hdf5``)."""
    for attrs in (demo.attrs, data.attrs):
        for key in ("language_instruction", "lang", "instruction"):
            if key in attrs:
                return _attr_text(attrs[key])
    if "problem_info" in data.attrs:
        try:
            info = json.loads(_attr_text(data.attrs["problem_info"]))
        except json.JSONDecodeError:
            raise DatasetError(path, "data attribute 'problem_info' is not valid JSON") from None
        if isinstance(info, dict) and info.get("language_instruction"):
            text = info["language_instruction"]
            return " ".join(text) if isinstance(text, list) else str(text)
    stem = path.name.removesuffix(".hdf5")
    if stem.endswith("_demo"):
        words = stem.removesuffix("_demo").split("_")
        while words and (words[0].isupper() or words[0].isdigit()):  # LIBERO-10 prefixes like KITCHEN_SCENE3
            words = words[1:]
        return " ".join(words) or None
    return None


def read_hdf5(
    path: str | Path,
    *,
    cameras: Mapping[str, str] | None = None,
    state_keys: Sequence[str] | None = None,
    instruction: str | None = None,
    rotate_images: bool = False,
    demos: Sequence[str] | None = None,
    drop_noops: bool = False,
    obs_after_action: bool = False,
) -> Iterator[Episode]:
    """Yield the demos of a robomimic/LIBERO HDF5 file as `Episode` objects, in demo number order.

    Args:
        cameras: our camera name -> obs key (default: the first of `CAMERA_KEYS` found for each).
        state_keys: obs keys concatenated into the state (default: see the module docstring).
        instruction: overrides the instruction found in the file.
        rotate_images: rotate frames 180 degrees (LIBERO's renders are stored upside down).
        demos: demo group names to read (default: all ``demo_<i>``).
        obs_after_action: the file's observation of a row is the one after that row's action: pair action t
            with row t-1's observation (frames, state) and drop the first action (applied before ``drop_noops``).
        drop_noops: drop the `noop_mask` steps (frames, state, action); a success reached on a dropped step
            counts on the kept step before it. ``Episode.extra["noops_dropped"]`` says how many went.

    Raises:
        DatasetError: naming the file and the group/key that is missing or malformed.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "missing")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DatasetError(path, f"not a readable HDF5 file ({e})") from None
    with f:
        if "data" not in f:
            raise DatasetError(path, f"no 'data' group (top level has {sorted(f)})")
        data = f["data"]
        names = list(demos) if demos is not None else _demo_names(data)
        if not names:
            raise DatasetError(path, "the 'data' group holds no demo_<i> groups")
        for i, name in enumerate(names):
            if name not in data:
                raise DatasetError(path, f"no group data/{name}")
            ep = _read_demo(path, data, name, i, cameras, state_keys, instruction, rotate_images)
            ep = _obs_before_action(path, ep) if obs_after_action else ep
            yield _without_noops(path, ep) if drop_noops else ep


def _read_demo(path: Path, data: Any, name: str, index: int, cameras: Mapping[str, str] | None,
               state_keys: Sequence[str] | None, instruction: str | None, rotate: bool) -> Episode:
    demo = data[name]
    where = f"data/{name}"
    if "actions" not in demo:
        raise DatasetError(path, f"{where} has no 'actions' dataset")
    if "obs" not in demo:
        raise DatasetError(path, f"{where} has no 'obs' group")
    obs = demo["obs"]
    actions = _demo_actions(path, where, demo)
    length = actions.shape[0]
    frames = _demo_frames(path, where, obs, length, cameras, rotate)
    state = _demo_state(path, where, obs, length, state_keys)
    text = instruction or find_instruction(path, data, demo)
    if not text:
        raise DatasetError(path, f"no language instruction for {where} (no 'language_instruction' attribute, "
                                 "no LIBERO 'problem_info'); pass instruction=...")
    step_success = _demo_step_success(path, where, demo, length)
    return Episode(frames=frames, state=state, action=actions.astype(np.float32), instruction=text,
                   seed=None, success=bool(step_success.any()), step_success=step_success, index=index,
                   extra={"source": f"{path.name}:{where}"})


def _obs_before_action(path: Path, ep: Episode) -> Episode:
    """Rows (observation after action t, action t) -> (observation after action t-1, action t), t >= 1."""
    if len(ep) < 2:
        raise DatasetError(path, f"{ep.extra['source']}: one step: no action has a stored observation before it")
    success = None if ep.step_success is None else ep.step_success[1:]
    return Episode(frames={c: f[:-1] for c, f in ep.frames.items()}, state=ep.state[:-1], action=ep.action[1:],
                   instruction=ep.instruction, seed=ep.seed, success=ep.success, step_success=success,
                   index=ep.index, extra=ep.extra)


def _without_noops(path: Path, ep: Episode) -> Episode:
    """``ep`` without its `noop_mask` steps; a dropped step's success moves to the kept step before it."""
    drop = noop_mask(ep.action)
    kept = np.flatnonzero(~drop)
    if kept.size == 0:
        raise DatasetError(path, f"{ep.extra['source']}: every step is a no-op (no motion, no gripper change)")
    success = ep.step_success
    if success is not None:
        success = np.logical_or.reduceat(success, kept)  # kept step i and the dropped ones up to the next kept
    return Episode(frames={c: f[kept] for c, f in ep.frames.items()}, state=ep.state[kept], action=ep.action[kept],
                   instruction=ep.instruction, seed=ep.seed, success=ep.success, step_success=success,
                   index=ep.index, extra={**ep.extra, "noops_dropped": int(drop.sum())})


def _demo_actions(path: Path, where: str, demo: Any) -> np.ndarray:
    """The demo's actions, checked: float (T, 7) with T > 0."""
    actions = np.asarray(demo["actions"][()])
    if actions.ndim != 2 or actions.shape[1] != 7 or not np.issubdtype(actions.dtype, np.floating):
        raise DatasetError(path, f"{where}/actions is {actions.dtype} {actions.shape}, expected float (T, 7)")
    if actions.shape[0] == 0:
        raise DatasetError(path, f"{where}/actions is empty")
    return actions


def _demo_frames(path: Path, where: str, obs: Any, length: int, cameras: Mapping[str, str] | None,
                 rotate: bool) -> dict[str, np.ndarray]:
    """Our camera name -> uint8 (T, H, W, 3) frames (``cameras`` or else the first of `CAMERA_KEYS` found)."""
    if cameras is None:
        cams: dict[str, str] = {}
        for ours, candidates in CAMERA_KEYS.items():
            found = next((k for k in candidates if k in obs), None)
            if found is not None:
                cams[ours] = found
        if not cams:
            raise DatasetError(path, f"{where}/obs has no camera images (looked for {CAMERA_KEYS}; has {sorted(obs)})")
    else:
        cams = dict(cameras)
    frames = {}
    for ours, key in cams.items():
        if key not in obs:
            raise DatasetError(path, f"{where}/obs has no {key!r} (has {sorted(obs)})")
        img = np.asarray(obs[key][()])
        if img.dtype != np.uint8 or img.ndim != 4 or img.shape[-1] != 3 or img.shape[0] != length:
            raise DatasetError(path, f"{where}/obs/{key} is {img.dtype} {img.shape}, expected uint8 "
                                     f"({length}, H, W, 3)")
        frames[ours] = np.ascontiguousarray(img[:, ::-1, ::-1]) if rotate else img
    return frames


def _demo_state(path: Path, where: str, obs: Any, length: int, state_keys: Sequence[str] | None) -> np.ndarray:
    """float32 (T, D): the ``state_keys`` (or else the first of `STATE_KEY_SETS` found) concatenated, a
    ``*_quat`` turned into axis-angle."""
    if state_keys is None:
        state_keys = next((s for s in STATE_KEY_SETS if all(k in obs for k in s)), None)
        if state_keys is None:
            raise DatasetError(path, f"{where}/obs has none of the state key sets {STATE_KEY_SETS}; has "
                                     f"{sorted(obs)} (pass state_keys=...)")
    parts = []
    for key in state_keys:
        if key not in obs:
            raise DatasetError(path, f"{where}/obs has no {key!r} (has {sorted(obs)})")
        x = np.asarray(obs[key][()], dtype=np.float64)
        x = x.reshape(length, -1) if x.shape[0] == length else None
        if x is None:
            raise DatasetError(path, f"{where}/obs/{key} has {obs[key].shape[0]} rows, actions have {length}")
        parts.append(quat_to_axis_angle(x) if key.endswith("_quat") and x.shape[1] == 4 else x)
    return np.concatenate(parts, axis=1).astype(np.float32)


def _demo_step_success(path: Path, where: str, demo: Any, length: int) -> np.ndarray:
    """bool (T,): the demo's ``dones``, or else success at the last step only (demos succeed by construction)."""
    if "dones" in demo:
        step_success = np.asarray(demo["dones"][()]).astype(bool).reshape(-1)
        if step_success.shape[0] != length:
            raise DatasetError(path, f"{where}/dones has {step_success.shape[0]} rows, actions have {length}")
    else:
        step_success = np.zeros(length, dtype=bool)
        step_success[-1] = True  # demos are successful by construction
    return step_success


def import_hdf5(path: str | Path, out: str | Path, *, overwrite: bool = False, lossless: bool = True,
                fps: int = 20, **read_kwargs: Any) -> dict[str, Any]:
    """Convert a robomimic/LIBERO HDF5 file into a LeRobot v3.0 dataset at ``out``; returns the writer's
    summary. ``read_kwargs`` go to `read_hdf5`."""
    from vla_rl.data.lerobot import write_lerobot

    return write_lerobot(out, read_hdf5(path, **read_kwargs), overwrite=overwrite, lossless=lossless, fps=fps,
                         info_extra={"source": str(Path(path).name)})
