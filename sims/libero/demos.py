"""LIBERO's demonstrations (robomimic HDF5, one ``<task name>_demo.hdf5`` per task: the libero_spatial, _object,
_goal, _10 and _90 datasets) as LeRobot datasets for `vla-rl sft`, in the conventions `LiberoEnv` gives the policy.

One command per suite folder (one dataset per task, each tagged with its env id so SFT validates on that task)::

    python -m sims.libero.demos path/to/libero_spatial --out data/libero_spatial

Conventions (docs/benchmarks.md, "LIBERO"):

* Images: LIBERO's files hold robosuite's camera observations as robosuite produced them, whose row order the
  file's ``data.attrs["macros_image_convention"]`` names (``opengl``, robosuite's default and every released
  dataset's: bottom-up; ``opencv``: top-down). `LiberoEnv` gives the policy the render rotated 180 degrees (as
  OpenVLA and SimpleVLA-RL do), so ``opengl`` frames are rotated 180 degrees and ``opencv`` frames (already
  flipped vertically) are mirrored left-right; both then equal the env's frames of the same scene. The size is
  kept (the datasets' 128 px): SFT records it and the envs render at it.
* State (8,): ``ee_pos`` (3), ``ee_ori`` (3, LIBERO's axis-angle of the end-effector quaternion), ``gripper_states``
  (2, the finger joints): `LiberoEnv.proprio`'s layout, from the same robosuite observables.
* Actions (7,) as stored: LIBERO's OSC_POSE deltas and gripper -1 open / +1 close, which is `LiberoEnv`'s
  convention too (no sign change, unlike OpenVLA's RLDS transform, which maps the gripper to 1 open / 0 close for
  its model and back at evaluation). `gripper_sign` checks it on every file: under +1 the fingers must close.
* No-ops: dropped as OpenVLA's regeneration drops them (`vla_rl.data.hdf5.noop_mask`), unless ``keep_noops``.
* Pairing: LIBERO's ``create_dataset.py`` stores, beside each action, the observation that action's step
  returned (the scene after it); the env gives the policy the observation before each action. So action t is
  paired with row t-1's observation and each demo's first action goes (``obs_after_action``), as OpenVLA's
  regeneration pairs them by replaying. The state then equals `LiberoEnv.proprio` (the same robosuite
  observables) and the images the env's renders of that scene (tests/sims/libero/test_libero_demos.py).

Unlike OpenVLA's regeneration, which replays every demo in the simulator (re-rendering at 256 px, and dropping
the demos whose replay fails), this import runs no simulator: it keeps every demo as recorded (each file's demos
were recorded as successes) at the file's 128 px.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vla_rl.data import DatasetError, Episode
from vla_rl.data.hdf5 import find_instruction, noop_mask, read_hdf5

FPS = 20  # LIBERO's control frequency
CONVENTIONS = ("opengl", "opencv")


def image_convention(path: str | Path) -> str:
    """The row order of a LIBERO file's images: ``data.attrs["macros_image_convention"]`` (``opengl`` if absent,
    robosuite's default)."""
    import h5py

    with h5py.File(path, "r") as f:
        value = f["data"].attrs.get("macros_image_convention", "opengl") if "data" in f else "opengl"
    value = value.decode() if isinstance(value, bytes) else str(value)
    if value not in CONVENTIONS:
        raise DatasetError(path, f"data attribute macros_image_convention is {value!r}; expected one of {CONVENTIONS}")
    return value


def orient(frames: np.ndarray, convention: str) -> np.ndarray:
    """uint8 (T, H, W, 3) stored frames -> the frames `LiberoEnv` renders (robosuite's render rotated 180 deg)."""
    if convention == "opengl":
        return np.ascontiguousarray(frames[:, ::-1, ::-1])
    if convention == "opencv":
        return np.ascontiguousarray(frames[:, :, ::-1])
    raise ValueError(f"unknown image convention {convention!r}; expected one of {CONVENTIONS}")


def task_names() -> dict[str, str]:
    """LIBERO task name (the bddl file's stem) -> our env id ``libero/<suite>/<i>``, over all five suites (names
    are unique across them). Needs the libero extra."""
    from sims.libero.env import SUITES, _libero

    benchmarks = _libero("benchmark").get_benchmark_dict()
    out = {}
    for suite, (name, _) in SUITES.items():
        bench = benchmarks[name]()
        out.update({bench.get_task(i).name: f"libero/{suite}/{i}" for i in range(bench.get_num_tasks())})
    return out


def match_task(path: str | Path, names: dict[str, str] | None = None) -> str | None:
    """Our env id for a LIBERO demo file, from its name (``<task name>_demo.hdf5``), or None when no task has it."""
    stem = Path(path).name.removesuffix(".hdf5").removesuffix("_demo")
    return (task_names() if names is None else names).get(stem)


def gripper_sign(path: str | Path) -> float:
    """How the fingers moved under the gripper command, over every demo of a file: the mean of
    ``command(t) * (opening(t+1) - opening(t))``, opening = |finger 1| + |finger 2| (m, ``gripper_states``).
    Negative when +1 closes (LIBERO's convention and ours); 0 when there is no finger data."""
    import h5py

    total, n = 0.0, 0
    with h5py.File(path, "r") as f:
        for demo in f["data"].values():
            if "gripper_states" not in demo.get("obs", {}):
                continue
            command = np.asarray(demo["actions"][()], np.float64)[:-1, 6]
            opening = np.abs(np.asarray(demo["obs/gripper_states"][()], np.float64)).sum(axis=1)
            total += float((command * np.diff(opening)).sum())
            n += command.size
    return total / max(n, 1)


def noop_count(path: str | Path) -> int:
    """How many steps of a file's demos `noop_mask` drops (reads the actions only; each demo's first action,
    which has no observation before it, is not counted)."""
    import h5py

    with h5py.File(path, "r") as f:
        return sum(int(noop_mask(demo["actions"][1:]).sum()) for demo in f["data"].values() if "actions" in demo)


def read_libero(path: str | Path, keep_noops: bool = False, instruction: str | None = None) -> Iterator[Episode]:
    """The demos of one LIBERO file as `Episode` objects in the env's conventions (module docstring)."""
    convention = image_convention(path)
    cameras = {"agentview": "agentview_rgb", "wrist": "eye_in_hand_rgb"}
    for ep in read_hdf5(path, cameras=cameras, state_keys=("ee_pos", "ee_ori", "gripper_states"),
                        instruction=instruction, obs_after_action=True, drop_noops=not keep_noops):
        ep.frames = {c: orient(f, convention) for c, f in ep.frames.items()}
        ep.extra["image_convention"] = convention
        yield ep


def import_libero(src: str | Path, out: str | Path, *, keep_noops: bool = False, overwrite: bool = False,
                  lossless: bool = True, check_gripper: bool = True) -> list[dict[str, Any]]:
    """Import a LIBERO demo file, or every ``*.hdf5`` in a folder, each into its own LeRobot dataset
    ``out/<task name>``; returns one summary per file (env task, episodes, frames, no-ops dropped).

    The instruction is the env's (`LiberoEnv.instruction`) when the file names a LIBERO task (the libero extra
    installed), else the file's own ``problem_info``. Raises `DatasetError` for a file whose gripper column runs
    the other way (`gripper_sign` > 0) unless ``check_gripper`` is False.
    """
    from vla_rl.data.lerobot import write_lerobot

    src, out = Path(src), Path(out)
    files = sorted(src.glob("*.hdf5")) if src.is_dir() else [src]
    if not files:
        raise DatasetError(src, "no *.hdf5 files")
    names = _task_names_if_installed()
    summaries = []
    for path in files:
        sign = gripper_sign(path)
        if check_gripper and sign > 0:
            raise DatasetError(path, f"the fingers open under gripper command +1 (sign {sign:+.2e}); LIBERO and "
                                     "LiberoEnv use -1 open, +1 close: flip the file's action[:, 6], or pass "
                                     "check_gripper=False (--no-gripper-check) to import it as it is")
        task = match_task(path, names) if names else None
        stem = path.name.removesuffix(".hdf5").removesuffix("_demo")
        extra = {"source": path.name, "env_task": task, "libero": {
            "image_convention": image_convention(path), "noops_filtered": not keep_noops,
            "file_instruction": _file_instruction(path)}}
        s = write_lerobot(out / stem, read_libero(path, keep_noops, _env_instruction(task) if task else None),
                          overwrite=overwrite, lossless=lossless, fps=FPS,
                          info_extra={k: v for k, v in extra.items() if v is not None})
        summaries.append({"file": str(path), "out": str(out / stem), "env_task": task, "episodes": s["episodes"],
                          "frames": s["frames"], "noops_dropped": 0 if keep_noops else noop_count(path),
                          "gripper_sign": sign})
    return summaries


def _task_names_if_installed() -> dict[str, str]:
    from vla_rl.availability import is_available

    return task_names() if is_available("libero") else {}


def _env_instruction(task: str) -> str:
    from vla_rl.envs import env_instructions

    return env_instructions(task)[0]


def _file_instruction(path: Path) -> str | None:
    import h5py

    with h5py.File(path, "r") as f:
        return find_instruction(path, f["data"], f["data"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sims.libero.demos", description=(
        "LIBERO demo files (robomimic HDF5) -> one LeRobot dataset per task for vla-rl sft, in LiberoEnv's "
        "conventions (images rotated as the env renders, no-ops dropped, 8-dim state, gripper -1 open / +1 close)"))
    p.add_argument("src", help="a LIBERO *_demo.hdf5 file, or a folder of them (e.g. libero_spatial)")
    p.add_argument("--out", required=True, help="folder for the datasets (one sub-folder per task)")
    p.add_argument("--keep-noops", action="store_true", help="keep the still steps OpenVLA's regeneration drops")
    p.add_argument("--overwrite", action="store_true", help="replace existing datasets")
    p.add_argument("--lossy", action="store_true", help="lossy video (smaller; default: lossless)")
    p.add_argument("--no-gripper-check", action="store_true", help="import files whose gripper sign looks flipped")
    a = p.parse_args(argv)
    rows = import_libero(a.src, a.out, keep_noops=a.keep_noops, overwrite=a.overwrite, lossless=not a.lossy,
                         check_gripper=not a.no_gripper_check)
    for r in rows:
        print(f"{r['file']}: {r['episodes']} demos, {r['frames']} frames ({r['noops_dropped']} no-ops dropped), "
              f"task {r['env_task'] or '(not a LIBERO task name: no env id)'} -> {r['out']}")
    print("SFT on them: vla-rl sft with data: " + json.dumps([r["out"] for r in rows]))


if __name__ == "__main__":
    main()
