"""Every task of libero_spatial, libero_object, libero_goal and libero_10 against LIBERO's own env on its first
official init states (`sims.libero.check`): builds, resets, both cameras non-blank and changing as the arm moves,
the MuJoCo state bit for bit, images equal to LIBERO's renders, success equal to LIBERO's predicate.

    MUJOCO_GL=egl python bench/libero_sweep.py [--states 5] [--suites spatial,object,goal,10] [--image-size 64]

Writes ``bench/results/libero_sweep.json`` (one record per task, a summary first); exits 1 if any task fails.
~40 min on 2 CPU cores (llvmpipe) for 40 tasks x 5 states. Needs the libero extra (make install-libero).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "libero_sweep.json"
TASKS_PER_SUITE = 10


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--states", type=int, default=5, help="official init states per task, from the first")
    p.add_argument("--suites", default="spatial,object,goal,10")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--move-steps", type=int, default=3, help="control steps moving the arm after each reset")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    from sims.libero.check import check_task

    t0 = time.perf_counter()
    tasks = []
    for suite in args.suites.split(","):
        for i in range(TASKS_PER_SUITE):
            try:
                rec = check_task(suite, i, range(args.states), image_size=args.image_size,
                                 move_steps=args.move_steps)
            except Exception as exc:  # a task that does not even build is a result too
                rec = {"id": f"libero/{suite}/{i}", "ok": False, "error": f"{type(exc).__name__}: {exc}",
                       "traceback": traceback.format_exc()}
            tasks.append(rec)
            print(f"{rec['id']}: {'ok' if rec['ok'] else 'FAILED'} ({rec.get('total_s', '-')} s)", flush=True)
            write(args, tasks, t0)
    summary = write(args, tasks, t0)
    print(json.dumps(summary))
    return 0 if summary["failed"] == [] else 1


def write(args: argparse.Namespace, tasks: list[dict], t0: float) -> dict:
    summary = {"tasks": len(tasks), "states_per_task": args.states, "image_size": args.image_size,
               "failed": [t["id"] for t in tasks if not t["ok"]],
               "build_s_median": _median([t["build_s"] for t in tasks if "build_s" in t]),
               "max_obs_image_lag": max((v for t in tasks for s in t.get("states", []) for v in s["obs_image_lag"]),
                                        default=None),
               "any_success_at_reset": [t["id"] for t in tasks if any(s["success"][0] for s in t.get("states", []))],
               "wall_s": round(time.perf_counter() - t0, 1), "machine": f"{platform.machine()}, {_cores()} cores"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"summary": summary, "tasks": tasks}, indent=1))
    tmp.replace(args.out)
    return summary


def _median(xs: list[float]) -> float | None:
    return sorted(xs)[len(xs) // 2] if xs else None


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
