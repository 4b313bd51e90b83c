"""The motion planner's process: runs ManiSkill's motion-planning solutions (mplib) and sends back the TCP path.

mplib 0.2.1 is built against numpy 1 and crashes under numpy 2 (a null call inside its extension on the first
`Planner`), while our venv keeps numpy 2. So the planner runs here, in a subprocess whose path starts with
``<venv>/maniskill-planner`` (numpy 1.26 and mplib, put there by ``make install-maniskill``); torch, sapien and
mani_skill come from the venv as usual. `PlannerClient` starts it and asks for plans.

Protocol: pickled plain-Python messages (lists and floats, no numpy objects: the two sides run different numpy),
each prefixed by its length, over the child's stdin and a private copy of its stdout (fd 1 itself is pointed at
stderr, so whatever the libraries print cannot corrupt the channel). Request ``(task, seed, reconfigure)``; reply
``("ok", planned, solved, [(pos 3, quat wxyz 4, gripper, held pose 7 or None), ...])`` or ``("error", message)``:
``planned`` whether the solution found its motions, ``solved`` whether the planning env itself ended in success,
and per control step the TCP pose, the gripper command and the pose (position, quaternion wxyz) of the actor the
task's ``held`` names.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import traceback
from pathlib import Path
from typing import IO, Any

PLANNER_DIR_ENV = "VLA_RL_MANISKILL_PLANNER_DIR"


def planner_dir() -> Path:
    """The folder with numpy 1.26 and mplib: ``$VLA_RL_MANISKILL_PLANNER_DIR`` or ``<sys.prefix>/maniskill-planner``."""
    return Path(os.environ.get(PLANNER_DIR_ENV) or Path(sys.prefix) / "maniskill-planner")


def planner_ready() -> bool:
    """True when the planner folder holds mplib."""
    return (planner_dir() / "mplib").is_dir()


def _send(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=4)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _recv(stream: IO[bytes]) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the planner process closed its channel")
    (n,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(n))


class PlannerClient:
    """A planning subprocess, started on first use; `plan` returns one episode's TCP path."""

    def __init__(self) -> None:
        if not planner_ready():
            raise RuntimeError(f"no motion planner in {planner_dir()}: run `make install-maniskill` (it puts mplib "
                               "0.2.1 and numpy 1.26 there: mplib crashes on numpy 2)")
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        root = Path(__file__).resolve().parents[2]
        path = [str(planner_dir()), str(root), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
        return subprocess.Popen([sys.executable, "-m", "sims.maniskill.plan_worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env)

    def plan(self, task: str, seed: int | None, reconfigure: bool) -> tuple[bool, bool, list[tuple]]:
        """(whether the solution found its motions, whether the planning env succeeded, the per-step path: TCP
        position, quaternion, gripper, held object's pose or None) for ``task`` reset to ``seed``.

        Raises:
            RuntimeError: the planner failed, with its traceback.
        """
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            _send(self.proc.stdin, (task, seed, reconfigure))
            reply = _recv(self.proc.stdout)
        except (EOFError, BrokenPipeError) as e:
            code = self.proc.poll()
            self.proc = None
            raise RuntimeError(f"the ManiSkill planner process died (exit code {code}) planning {task} seed {seed}; "
                               "its stderr is above") from e
        if reply[0] != "ok":
            raise RuntimeError(f"the ManiSkill planner failed on {task} seed {seed}:\n{reply[1]}")
        return bool(reply[1]), bool(reply[2]), reply[3]

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# ---- the child ---------------------------------------------------------------------------------


def _recorder(task: str, reconfigure: bool) -> Any:
    import gymnasium as gym
    import numpy as np

    from sims.maniskill.env import TASKS, task_class

    held = TASKS[task].held

    def pose(actor: Any) -> list:
        return actor.pose.raw_pose[0].cpu().numpy().astype(np.float64).tolist()

    class Recorder(gym.Wrapper):
        """After each step of the planning env: the TCP pose, the gripper command (ours: +1 closed) and the held
        actor's pose."""

        def __init__(self, env: Any) -> None:
            super().__init__(env)
            self.path: list[tuple[list, list, float]] = []

        def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
            self.path = []
            return self.env.reset(seed=seed, options={**(options or {}), "reconfigure": reconfigure})

        def step(self, action: Any):
            out = self.env.step(action)
            base = self.env.unwrapped
            tcp = pose(base.agent.tcp)
            gripper = float(np.asarray(action).reshape(-1)[-1])
            obj = pose(getattr(base, held)) if held else None
            self.path.append((tcp[:3], tcp[3:], -gripper, obj))  # the planner's +1 is open
            self.last_success = bool(np.asarray(out[4]["success"]).reshape(-1)[0])
            return out

    cls = task_class(task, wrist=False)
    return Recorder(cls(num_envs=1, obs_mode="state", control_mode="pd_joint_pos", sim_backend="cpu",
                        render_mode=None, robot_uids="panda"))


def main() -> None:
    channel_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # library prints go to stderr
    channel_in = sys.stdin.buffer
    from sims.maniskill.env import TASKS
    from vla_rl.registry import resolve_entry_point

    recorders: dict[tuple[str, bool], Any] = {}
    while True:
        try:
            task, seed, reconfigure = _recv(channel_in)
        except EOFError:
            return
        try:
            if (task, reconfigure) not in recorders:
                recorders[(task, reconfigure)] = _recorder(task, reconfigure)
            rec = recorders[(task, reconfigure)]
            result = resolve_entry_point(TASKS[task].solution)(rec, seed=seed, debug=False, vis=False)
            planned = not (isinstance(result, int) and result == -1)
            _send(channel_out, ("ok", planned, bool(rec.path) and rec.last_success, rec.path))
        except Exception as exc:  # report; stay up for the next request
            _send(channel_out, ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


if __name__ == "__main__":
    main()
