"""The digital twin: one MuJoCo arm env behind ROS 2 topics, stepped once per received command.

After a reset and after each step it publishes, all stamped with one wall-clock time (``time.time()``, the clock the
policy node uses too): one ``sensor_msgs/Image`` (rgb8) per camera, ``sensor_msgs/JointState`` (7 arm joints and 2
fingers, MJCF names), the TCP as ``geometry_msgs/PoseStamped`` and the instruction (``std_msgs/String``); and on
twin-only topics ``success`` / ``done`` (``std_msgs/Bool``, evaluation only) and the scripted expert's next action
(privileged) as a TwistStamped + finger JointTrajectory, so an expert can act through the whole bridge.

Commands, one 20 Hz step each: in twist mode a ``geometry_msgs/TwistStamped`` (MoveIt Servo's ``delta_twist_cmds``,
base frame), turned back into the policy's action; in joint_trajectory mode a one-point
``trajectory_msgs/JointTrajectory`` of the arm joints' targets, which the servos are driven to
(`ArmEnv.step_joint_targets`; a malformed one is logged and ignored). The fingers come as a one-point JointTrajectory
stamped like the arm's command (the twin waits briefly for the matching one, else keeps the last opening).
``/twin/reset`` (``std_msgs/String``) carries a seed for a new episode, or ``stop``. ``/twin/cameras``
(``std_msgs/Bool``) False stops the images (fault tests). Idle for ``idle_republish_s`` (no command), the twin
republishes its unchanged state with fresh stamps, as a real arm's drivers keep publishing, so a node held by an
e-stop can resume once released.

Run: ``vla-rl twin --task mujoco/Reach-v1 --seed 2000000`` (``--robot configs/robots/twin.yaml``, the default;
``configs/robots/twin_joint.yaml`` for joint_trajectory mode).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from robots.config import RobotConfig
from robots.ros2 import messages as m
from robots.ros2.convert import action_to_command, command_to_action
from robots.ros2.transport import RELIABLE, SENSOR_DATA, CycloneTransport, QosProfile, Transport, free_domain

log = logging.getLogger(__name__)

GRIPPER_PAIR_TIMEOUT_S = 0.5  # how long an arm command waits for its gripper message


def check_against_sim(cfg: RobotConfig) -> None:
    """The config's action units and joints must be the sim's, or the twin would move differently."""
    from sims.mujoco.arm import ARM_JOINTS, FINGER_JOINTS, FINGER_OPEN
    from sims.mujoco.sim import CONTROL_HZ, POS_SCALE, ROT_SCALE

    sim = dict(pos_scale=POS_SCALE, rot_scale=ROT_SCALE, control_hz=float(CONTROL_HZ), finger_open=FINGER_OPEN,
               arm_joints=list(ARM_JOINTS), finger_joints=list(FINGER_JOINTS))
    bad = {k: (getattr(cfg, k), v) for k, v in sim.items() if getattr(cfg, k) != v}
    if bad:
        raise ValueError(f"robot config disagrees with the sim (config, sim): {bad}")


class Twin:
    """One env, its publishers and command subscriptions. ``serve()`` runs until ``stop`` arrives."""

    def __init__(self, task_id: str, cfg: RobotConfig, transport: Transport):
        from vla_rl.envs import make_env

        check_against_sim(cfg)
        self.cfg, self.t = cfg, transport
        self.env = make_env(task_id, image_size=cfg.image_size, cameras=tuple(cfg.cameras))
        sim = self.env.sim
        self._qadr = [sim.model.joint(n).qposadr[0] for n in cfg.arm_joints + cfg.finger_joints]
        self._dadr = [sim.model.joint(n).dofadr[0] for n in cfg.arm_joints + cfg.finger_joints]
        tp = cfg.topics
        self.pub_images = {c: transport.publisher(tp.image_topic(c), m.Image, SENSOR_DATA) for c in cfg.cameras}
        self.pub_joints = transport.publisher(tp.joint_states, m.JointState, SENSOR_DATA)
        self.pub_pose = transport.publisher(tp.pose, m.PoseStamped, SENSOR_DATA)
        self.pub_instruction = transport.publisher(tp.instruction, m.String, RELIABLE)
        self.pub_success = transport.publisher(tp.twin_success, m.Bool, RELIABLE)
        self.pub_done = transport.publisher(tp.twin_done, m.Bool, RELIABLE)
        self.pub_status = transport.publisher(tp.twin_status, m.String, QosProfile(depth=100))
        self.pub_expert_twist = transport.publisher(tp.twin_expert_twist, m.TwistStamped, RELIABLE)
        self.pub_expert_gripper = transport.publisher(tp.twin_expert_gripper, m.JointTrajectory, RELIABLE)
        self.joint_mode = cfg.command_mode == "joint_trajectory"
        self.sub_command = (transport.subscribe(tp.joint_trajectory, m.JointTrajectory, qos=RELIABLE) if self.joint_mode
                            else transport.subscribe(tp.twist, m.TwistStamped, qos=RELIABLE))
        self.sub_gripper = transport.subscribe(tp.gripper, m.JointTrajectory, qos=RELIABLE)
        self.sub_reset = transport.subscribe(tp.twin_reset, m.String, qos=RELIABLE)
        self.sub_cameras = transport.subscribe(tp.twin_cameras, m.Bool, qos=RELIABLE)
        self.cameras_on = True
        self.opening = cfg.finger_open  # fingers open until told otherwise
        self._grippers: dict[tuple[int, int], float] = {}  # stamp -> opening, not yet paired with a twist
        self._obs: dict[str, np.ndarray] = {}
        self._expert = np.zeros(7, np.float32)
        self._last_stamp = 0.0
        self.success = self.done = False
        self.steps = 0
        self.seed: int | None = None
        self._reset_time = 0.0

    # ---- episode ---------------------------------------------------------------------------------------------

    def reset(self, seed: int) -> None:
        self._obs, info = self.env.reset(seed=seed)
        self.seed, self._reset_time = seed, time.time()
        self.success, self.done, self.steps = False, False, 0
        self.opening = self.cfg.finger_open
        self._grippers.clear()
        self._expert = self.env.expert_action()
        self.publish()

    def step(self, action: np.ndarray) -> None:
        """One step of the policy's ``action`` (7,) (twist mode)."""
        self._advance(lambda: self.env.step(action))

    def step_joints(self, q_target: np.ndarray, opening: float) -> None:
        """One step driving the arm to ``q_target`` (7,) rad, each finger to ``opening`` m (joint mode)."""
        self._advance(lambda: self.env.step_joint_targets(q_target, opening))

    def _advance(self, env_step: Callable[[], tuple]) -> None:
        if self.done:  # commands after the end are ignored (the idle republish keeps the state fresh)
            return
        self._obs, _, terminated, truncated, info = env_step()
        self.steps += 1
        self.success, self.done = bool(info["success"]), bool(terminated or truncated)
        if not self.done:
            self._expert = self.env.expert_action()
        else:
            log.info("episode of seed %s ended after %d steps: %s", self.seed, self.steps,
                     "success" if self.success else "truncated")
        self.publish()

    # ---- publishing ------------------------------------------------------------------------------------------

    def _stamp(self) -> float:
        t = max(time.time(), self._last_stamp + 1e-6)  # strictly increasing per stream
        self._last_stamp = t
        return t

    def publish(self) -> None:
        """Every observation topic, one stamp; the expert's action carries the same stamp."""
        t = self._stamp()
        header = m.Header(stamp=m.stamp(t), frame_id=self.cfg.base_frame)
        if self.cameras_on:
            for c, pub in self.pub_images.items():
                pub.publish(m.image_from_rgb(self._obs[c], t, frame_id=f"{c}_optical_frame"))
        d = self.env.sim.data
        names = self.cfg.arm_joints + self.cfg.finger_joints
        self.pub_joints.publish(m.JointState(header=header, name=names, position=[float(d.qpos[i]) for i in self._qadr],
                                             velocity=[float(d.qvel[i]) for i in self._dadr], effort=[]))
        pos = self.env.sim.tcp_pos()
        q = np.zeros(4)
        mujoco.mju_mat2Quat(q, self.env.sim.tcp_rotmat().ravel())  # (w, x, y, z)
        self.pub_pose.publish(m.PoseStamped(header=header, pose=m.Pose(
            position=m.Point(*map(float, pos)), orientation=m.Quaternion(x=q[1], y=q[2], z=q[3], w=q[0]))))
        self.pub_instruction.publish(m.String(self.env.instruction))
        lin, ang, opening = action_to_command(self._expert, self.cfg.dt, self.cfg.pos_scale, self.cfg.rot_scale,
                                              self.cfg.finger_open)
        self.pub_expert_gripper.publish(self._finger_msg(header, opening))
        self.pub_expert_twist.publish(m.TwistStamped(header=header, twist=m.Twist(
            linear=m.Vector3(*map(float, lin)), angular=m.Vector3(*map(float, ang)))))
        self.pub_success.publish(m.Bool(self.success))
        self.pub_done.publish(m.Bool(self.done))
        status = {"seed": self.seed, "steps": self.steps, "success": self.success, "done": self.done, "stamp": t}
        self.pub_status.publish(m.String(json.dumps(status)))  # one message: which episode, how far, how it ended

    def _finger_msg(self, header: m.Header, opening: float) -> m.JointTrajectory:
        n = len(self.cfg.finger_joints)
        point = m.JointTrajectoryPoint(positions=[opening] * n, time_from_start=m.Duration(0, int(self.cfg.dt * 1e9)))
        return m.JointTrajectory(header=header, joint_names=list(self.cfg.finger_joints), points=[point])

    # ---- commands --------------------------------------------------------------------------------------------

    def _opening_for(self, stamp: m.Time) -> float:
        """The finger opening sent with the arm command stamped ``stamp``: wait briefly for it, else keep the last."""
        key = (stamp.sec, stamp.nanosec)
        deadline = time.monotonic() + GRIPPER_PAIR_TIMEOUT_S
        while True:
            for g in self.sub_gripper.take():
                if g.points and g.points[0].positions:
                    self._grippers[(g.header.stamp.sec, g.header.stamp.nanosec)] = float(np.mean(g.points[0].positions))
            if key in self._grippers:
                self.opening = self._grippers.pop(key)
                break
            if time.monotonic() > deadline:
                log.warning("no gripper command stamped like the arm's; keeping opening %.4f", self.opening)
                break
            time.sleep(0.001)
        for k in [k for k in self._grippers if k < key]:  # drop unpaired older ones
            del self._grippers[k]
        return self.opening

    def on_twist(self, msg: m.TwistStamped) -> None:
        if m.to_seconds(msg.header.stamp) < self._reset_time:
            return  # sent for the last episode
        tw = msg.twist
        opening = self._opening_for(msg.header.stamp)
        action = command_to_action([tw.linear.x, tw.linear.y, tw.linear.z], [tw.angular.x, tw.angular.y,
                                   tw.angular.z], opening, self.cfg.dt, self.cfg.pos_scale, self.cfg.rot_scale,
                                   self.cfg.finger_open)
        self.step(action)

    def on_joint_trajectory(self, msg: m.JointTrajectory) -> None:
        if m.to_seconds(msg.header.stamp) < self._reset_time:
            return  # sent for the last episode
        q = self._arm_targets(msg)
        if q is None:
            return
        self.step_joints(q, self._opening_for(msg.header.stamp))

    def _arm_targets(self, msg: m.JointTrajectory) -> np.ndarray | None:
        """The arm joints' targets (7,) rad in the sim's order from a one-point trajectory, or None (logged) when it
        does not name exactly the arm joints or its positions are not finite."""
        names = list(msg.joint_names)
        positions = list(msg.points[0].positions) if len(msg.points) == 1 else []
        if sorted(names) != sorted(self.cfg.arm_joints) or len(positions) != len(names):
            log.warning("ignored a joint trajectory: want one point for %s, got joints %s, %d points",
                        self.cfg.arm_joints, names, len(msg.points))
            return None
        by_name = dict(zip(names, positions, strict=True))
        q = np.array([by_name[j] for j in self.cfg.arm_joints], dtype=np.float64)
        if not np.all(np.isfinite(q)):
            log.warning("ignored a joint trajectory with non-finite positions %s", q)
            return None
        return q

    def serve(self, max_s: float | None = None) -> None:
        """Handle resets, camera switches and commands until ``stop`` (or ``max_s`` seconds)."""
        end = None if max_s is None else time.monotonic() + max_s
        while end is None or time.monotonic() < end:
            for msg in self.sub_cameras.take():
                self.cameras_on = bool(msg.data)
            for msg in self.sub_reset.take():
                if msg.data.strip() == "stop":
                    return
                self.sub_command.take()  # commands of the last episode are void
                self.reset(int(msg.data))
            command = self.sub_command.wait(timeout=self.cfg.idle_republish_s)
            if command is not None:
                (self.on_joint_trajectory if self.joint_mode else self.on_twist)(command)
            elif self._obs:
                self.publish()  # idle: the same state, fresh stamps

    def close(self) -> None:
        self.env.close()


def run_twin(task_id: str, seed: int | None, cfg: RobotConfig, transport: Transport,
             max_s: float | None = None) -> None:
    """Serve one twin until ``stop`` on the reset topic; ``seed``: the first episode (None: wait for a reset)."""
    twin = Twin(task_id, cfg, transport)
    try:
        if seed is not None:
            twin.reset(seed)
        twin.serve(max_s)
    finally:
        twin.close()


class TwinClient:
    """The evaluator's side of a twin's twin-only topics: start episodes, read success and done, switch cameras."""

    def __init__(self, cfg: RobotConfig, transport: Transport):
        tp = cfg.topics
        self.pub_reset = transport.publisher(tp.twin_reset, m.String, RELIABLE)
        self.pub_cameras = transport.publisher(tp.twin_cameras, m.Bool, RELIABLE)
        self.sub_status = transport.subscribe(tp.twin_status, m.String, qos=QosProfile(depth=100))
        self.seed: int | None = None
        self.status: dict = {}

    def wait_matched(self, timeout: float = 60.0) -> None:
        """Until the twin process is up (its reset subscription matched and its done topic publishing)."""
        deadline = time.monotonic() + timeout
        while self.pub_reset.matched() == 0 or self.sub_status.matched() == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the twin did not come up")
            time.sleep(0.05)

    def reset(self, seed: int) -> None:
        self.seed, self.status = seed, {}
        self.pub_reset.publish(m.String(str(seed)))

    def poll(self, timeout: float = 0.0) -> dict:
        """The newest status of the episode asked for by the last ``reset`` ({} before its first), waiting up to
        ``timeout`` seconds for a status message when none is queued."""
        first = self.sub_status.wait(timeout) if timeout > 0 else None
        for msg in ([first] if first is not None else []) + self.sub_status.take():
            status = json.loads(msg.data)
            if status["seed"] == self.seed and (not self.status or status["stamp"] > self.status["stamp"]):
                self.status = status
        return self.status

    def stop(self) -> None:
        self.pub_reset.publish(m.String("stop"))

    def cameras(self, on: bool) -> None:
        self.pub_cameras.publish(m.Bool(on))


def run_episode(node, client: TwinClient, seed: int, max_s: float = 30.0) -> dict:
    """One episode through the bridge: reset the twin to ``seed``, wait for its first observation, then step
    ``node`` on each new input until the twin says done. Returns seed, success, steps, commands and wall seconds."""
    sent0, t0 = len(node.sent), time.monotonic()
    client.reset(seed)
    status: dict = {}
    while not status and time.monotonic() - t0 < max_s:
        status = client.poll(timeout=node.cfg.dt)
    node.new_episode(min_stamp=status.get("stamp", 0.0))
    while status and not status["done"] and time.monotonic() - t0 < max_s:
        if node.step() is None:  # nothing new to act on: sleep until an input arrives
            node.wait_for_new_input(node.cfg.dt)
        status = client.poll()
    return {"seed": seed, "success": bool(status.get("success")), "steps": status.get("steps", 0),
            "done": bool(status.get("done")), "commands": len(node.sent) - sent0, "wall_s": time.monotonic() - t0}


@contextlib.contextmanager
def twin_bridge(task: str, robot: str | Path, cfg: RobotConfig, source: Any = None,
                max_s: float | None = None) -> Iterator[tuple[Any, TwinClient, CycloneTransport]]:
    """A twin of ``task`` in a child process (``vla-rl twin``, robot config file ``robot`` at ``cfg``'s image size)
    and, in this process, a `PolicyNode` acting with ``source`` (None: the twin's expert) and a `TwinClient`, on a
    fresh DDS domain. Yields (node, client, transport); stops the twin on exit, and raises if it failed."""
    from robots.ros2.node import PolicyNode

    domain = free_domain()
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    cmd = [sys.executable, "-m", "vla_rl.cli", "twin", "--task", task, "--robot", str(robot), "--image-size",
           str(cfg.image_size), "--domain", str(domain)] + (["--max-s", str(max_s)] if max_s else [])
    child = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        with CycloneTransport(domain_id=domain) as t:
            node = PolicyNode(cfg, t, source=source)
            client = TwinClient(cfg, t)
            client.wait_matched(timeout=120)
            yield node, client, t
            client.stop()
        _, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if child.returncode != 0:
        raise RuntimeError(f"the twin exited with {child.returncode}: {err[-2000:]}")
