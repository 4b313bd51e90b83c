"""The policy node: ROS 2 observations in, safety-filtered arm commands and finger targets out.

Every input goes through ``robots.safety.SafetyLayer`` as it arrives (images: header stamp and layout; joint states;
e-stop). ``step(now)`` is one control tick: build the policy's observation (images ``(1, H, W, 3)`` per camera,
state ``(1, 8)`` from the TCP pose and the finger joints), run the policy when its chunk is used up (receding
horizon), turn the next action into the arm's command and pass it through the safety layer, then publish the
decision's command, fingers first, both stamped ``now``; on hold nothing is sent and the chunk is dropped (the
policy replans from what it sees next). ``run()`` calls ``step`` at the control rate, or in lockstep with a
command-driven twin, once per new observation.

Command modes (``RobotConfig.command_mode``): ``twist``: a MoveIt Servo TwistStamped (``robots.ros2.convert``)
through ``filter_twist``. ``joint_trajectory``: the arm's joint targets by differential IK on the robot's description
from the latest accepted joint state (``robots.ik``, the sim's own controller), through ``filter_joint_target``
(position, velocity, acceleration and step limits), as a one-point JointTrajectory for ros2_control's
joint_trajectory_controller (``time_from_start`` one control period). In lockstep, joint commands go out at most
one per control period: the twin runs each for one period of sim time, and the safety layer bounds a joint's
motion by the wall-clock time since the last command.

Time: ``now`` and all stamps are wall-clock seconds (``time.time()``), as both processes share one machine.
Latency: from the arrival of the newest observation message used to the command's publish (``latencies``).
E-stop: ``/estop`` True latches; False does not release; ``/estop/reset`` True (or ``reset_estop()``) does.
Deadman (with ``safety.deadman_s``): ``/deadman`` True at least every ``deadman_s`` keeps commands flowing; False or
silence holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from robots.config import RobotConfig
from robots.ik import ArmIK
from robots.ros2 import messages as m
from robots.ros2.convert import action_to_command, command_to_action, state_from_pose
from robots.ros2.transport import RELIABLE, SENSOR_DATA, Transport
from robots.safety import Decision, SafetyLayer

log = logging.getLogger(__name__)


class ActionSource(Protocol):
    """What the node runs: an observation -> a chunk ``(T, 7)``, or None when it cannot act yet."""

    def reset(self) -> None: ...

    def __call__(self, obs: dict[str, np.ndarray], instruction: str, stamp: float) -> np.ndarray | None: ...


class CheckpointPolicy:
    """A ``vla_rl`` checkpoint, greedy (``vla_rl.evaluation.VLAChunkPolicy``)."""

    def __init__(self, path: str, n_action_steps: int | None = None):
        from vla_rl.evaluation import VLAChunkPolicy

        self.policy = VLAChunkPolicy.from_pretrained(path, n_action_steps=n_action_steps)

    def reset(self) -> None:
        pass

    def __call__(self, obs: dict[str, np.ndarray], instruction: str, stamp: float) -> np.ndarray:
        return self.policy.act(obs, [instruction])[0]


class TwinExpert:
    """The twin's scripted expert, read from its twin-only topics: the action published with the observation
    stamped ``stamp`` (None until both its twist and fingers have arrived)."""

    def __init__(self, cfg: RobotConfig, transport: Transport, on_message: Callable[[], None] = lambda: None):
        self.cfg = cfg
        self._twists: dict[float, Any] = {}
        self._fingers: dict[float, float] = {}
        self._lock = threading.Lock()
        self._wake = on_message
        transport.subscribe(cfg.topics.twin_expert_twist, m.TwistStamped, self._on_twist, RELIABLE)
        transport.subscribe(cfg.topics.twin_expert_gripper, m.JointTrajectory, self._on_fingers, RELIABLE)

    def _on_twist(self, msg: m.TwistStamped) -> None:
        with self._lock:
            self._twists[m.to_seconds(msg.header.stamp)] = msg.twist
        self._wake()

    def _on_fingers(self, msg: m.JointTrajectory) -> None:
        with self._lock:
            self._fingers[m.to_seconds(msg.header.stamp)] = float(np.mean(msg.points[0].positions))
        self._wake()

    def reset(self) -> None:
        pass

    def __call__(self, obs: dict[str, np.ndarray], instruction: str, stamp: float) -> np.ndarray | None:
        with self._lock:
            tw, opening = self._twists.get(stamp), self._fingers.get(stamp)
            for d in (self._twists, self._fingers):  # forget what is older than this observation
                for k in [k for k in d if k < stamp]:
                    del d[k]
        if tw is None or opening is None:
            return None
        c = self.cfg
        action = command_to_action([tw.linear.x, tw.linear.y, tw.linear.z], [tw.angular.x, tw.angular.y,
                                   tw.angular.z], opening, c.dt, c.pos_scale, c.rot_scale, c.finger_open)
        return action[None]


@dataclass(frozen=True)
class JointCommand:
    """One joint_trajectory command published: at ``now``, the IK's targets ``asked`` and the safety layer's ``sent``
    (rad, in ``arm_joints`` order), the ``reference`` positions its velocity bound was measured from, the ``dt``
    (s) that bound allowed for, and each finger's ``opening`` (m)."""

    now: float
    asked: tuple[float, ...]
    sent: tuple[float, ...]
    reference: tuple[float, ...]
    dt: float
    opening: float


@dataclass(frozen=True)
class _Tick:
    """What one control tick acts on: the policy's observation, the TCP position (3,), the arm joints (n,), the
    observation's stamp and sequence number, the instruction, and the arrival time of the newest input used."""

    obs: dict[str, np.ndarray]
    ee: np.ndarray
    q: np.ndarray
    stamp: float
    seq: int
    instruction: str
    newest: float


class PolicyNode:
    """Subscribes to a robot's observations and e-stop, publishes its arm and finger commands.

    ``sent``: every command published: in twist mode (now, linear, angular, opening), in joint mode a `JointCommand`;
    ``latencies``: seconds from the newest observation's arrival to each publish; ``decisions``: the hold / clamp
    messages logged."""

    def __init__(self, cfg: RobotConfig, transport: Transport, source: ActionSource | None = None,
                 clock: Callable[[], float] = time.time):
        self.cfg, self.clock = cfg, clock
        self.source: ActionSource = source if source is not None else TwinExpert(cfg, transport, self._wake_up)
        self.safety = SafetyLayer(cfg.safety)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._images: dict[str, Any] = {}
        self._arrival: dict[str, float] = {}
        self._fingers: np.ndarray | None = None
        self._fingers_stamp = 0.0
        self._arm_q: np.ndarray | None = None  # rad, arm_joints order, from the latest accepted joint state
        self._published_at = 0.0  # wall-clock time the last command went out (its stamp is the tick's start)
        self._pose: m.PoseStamped | None = None
        self._pose_seq = 0
        self._acted_seq = 0
        self._instruction = ""
        self._chunk: list[np.ndarray] = []
        self.min_stamp = 0.0
        self._last_log = ""
        self.sent: list[tuple[float, tuple[float, ...], tuple[float, ...], float] | JointCommand] = []
        self.ik = ArmIK.from_config(cfg) if cfg.command_mode == "joint_trajectory" else None
        self._target_rot: np.ndarray | None = None  # the IK's orientation target for the command being decided
        self.latencies: list[float] = []
        self.decisions: list[str] = []
        tp = cfg.topics
        for cam in cfg.cameras:
            transport.subscribe(tp.image_topic(cam), m.Image, lambda msg, c=cam: self._on_image(c, msg), SENSOR_DATA)
        transport.subscribe(tp.joint_states, m.JointState, self._on_joint_state, SENSOR_DATA)
        transport.subscribe(tp.pose, m.PoseStamped, self._on_pose, SENSOR_DATA)
        transport.subscribe(tp.instruction, m.String, self._on_instruction, RELIABLE)
        transport.subscribe(tp.estop, m.Bool, self._on_estop, RELIABLE)
        transport.subscribe(tp.estop_reset, m.Bool, self._on_estop_reset, RELIABLE)
        if cfg.safety.deadman_s is not None:
            transport.subscribe(tp.heartbeat, m.Bool, self._on_heartbeat, RELIABLE)
        if self.ik is None:
            self.pub_twist = transport.publisher(tp.twist, m.TwistStamped, RELIABLE)
        else:
            self.pub_arm = transport.publisher(tp.joint_trajectory, m.JointTrajectory, RELIABLE)
        self.pub_gripper = transport.publisher(tp.gripper, m.JointTrajectory, RELIABLE)

    # ---- inputs (DDS listener threads) -----------------------------------------------------------------------

    def _wake_up(self) -> None:
        self._wake.set()

    def _on_image(self, camera: str, msg: m.Image) -> None:
        now = self.clock()
        with self._lock:
            if self.safety.on_image(camera, m.to_seconds(msg.header.stamp), msg.height, msg.width, msg.encoding,
                                    msg.step, len(msg.data), now=now, encodings=("rgb8",)):
                self._images[camera], self._arrival[f"image/{camera}"] = msg, now
        self._wake.set()

    def _on_joint_state(self, msg: m.JointState) -> None:
        now = self.clock()
        with self._lock:
            vel = list(msg.velocity) if len(msg.velocity) == len(msg.name) else None
            if self.safety.on_joint_state(m.to_seconds(msg.header.stamp), list(msg.name), list(msg.position), vel,
                                          now=now):
                pos = dict(zip(msg.name, msg.position, strict=True))
                if all(f in pos for f in self.cfg.finger_joints):  # else keep the last (a gripper may publish apart)
                    self._fingers = np.array([pos[f] for f in self.cfg.finger_joints])
                    self._fingers_stamp = m.to_seconds(msg.header.stamp)
                self._arm_q = np.array([pos[j] for j in self.cfg.arm_joints])
                self._arrival["joint_state"] = now
        self._wake.set()

    def _on_pose(self, msg: m.PoseStamped) -> None:
        now = self.clock()
        p, q = msg.pose.position, msg.pose.orientation
        with self._lock:
            if not self.safety.on_pose(m.to_seconds(msg.header.stamp), (p.x, p.y, p.z), (q.x, q.y, q.z, q.w), now=now):
                return
            self._pose, self._arrival["pose"] = msg, now
            self._pose_seq += 1
        self._wake.set()

    def _on_instruction(self, msg: m.String) -> None:
        with self._lock:
            self._instruction = msg.data

    def _on_estop(self, msg: m.Bool) -> None:
        with self._lock:
            self.safety.on_estop(msg.data, self.clock())
        self._wake.set()

    def _on_heartbeat(self, msg: m.Bool) -> None:
        with self._lock:
            self.safety.on_heartbeat(self.clock(), alive=bool(msg.data))
        self._wake.set()

    def _on_estop_reset(self, msg: m.Bool) -> None:
        if msg.data:
            self.reset_estop()

    def reset_estop(self) -> bool:
        """Release a latched e-stop (refused while ``/estop`` still says pressed)."""
        with self._lock:
            return self.safety.reset_estop(self.clock())

    def new_episode(self, min_stamp: float = 0.0) -> None:
        """Forget the chunk in flight (the twin was reset) and ignore observations stamped before ``min_stamp``; in
        joint mode also the IK's orientation target and the last command the safety layer bounds the next from."""
        with self._lock:
            self._chunk.clear()
            self.min_stamp = min_stamp
            self.source.reset()
            if self.ik is not None:  # the twin put the arm back: measure the next command from where it is
                self.ik.reset()
                self.safety.forget_command()

    # ---- one control tick ------------------------------------------------------------------------------------

    def _observation(self) -> tuple[dict[str, np.ndarray], np.ndarray, float] | None:
        """(obs, ee position, pose stamp) from the latest messages, or None while any is missing."""
        if self._pose is None or self._fingers is None or set(self._images) != set(self.cfg.cameras):
            return None
        p, q = self._pose.pose.position, self._pose.pose.orientation
        ee = np.array([p.x, p.y, p.z])
        obs = {c: m.rgb_from_image(self._images[c])[None] for c in self.cfg.cameras}
        obs["state"] = state_from_pose(ee, np.array([q.x, q.y, q.z, q.w]), self._fingers)[None]
        return obs, ee, m.to_seconds(self._pose.header.stamp)

    def _answers_last_command(self, stamp: float) -> bool:
        """Lockstep: the observation stamped ``stamp`` is whole and came after the last command sent. A twin stamps
        one observation's topics alike, but they arrive on separate listener threads, so the pose may come before
        the images it goes with; and one it republished while idle (the policy was thinking) predates the command
        and must not take the command's turn, or every later chunk would be planned a step late."""
        images = (m.to_seconds(i.header.stamp) for i in self._images.values())
        whole = self._fingers_stamp == stamp and all(t == stamp for t in images)
        return whole and stamp > self._published_at

    def step(self, now: float | None = None) -> Decision | None:
        """One tick: the decision taken, or None when there was nothing to act on (no observation yet, in lockstep
        no new one or one not whole yet or, in joint mode, not a control period since the last command; the policy
        not ready)."""
        now = self.clock() if now is None else now
        with self._lock:
            tick = self._tick(now)
        if not isinstance(tick, _Tick):
            return tick
        if not self._chunk:
            chunk = self.source(tick.obs, tick.instruction, tick.stamp)
            if chunk is None:
                return None
            with np.errstate(over="ignore"):  # a wild action (1e300) becomes inf, which the safety layer refuses
                self._chunk = list(np.asarray(chunk, dtype=np.float32))
        action = self._chunk[0]
        decision, asked = self._decide(action, tick, now)
        if decision.hold:
            self._drop_plan()
            return self._note(decision)
        self._chunk.pop(0)
        self._publish(decision, action, asked, now)
        self.latencies.append(self.clock() - tick.newest)
        return self._note(decision)

    def _tick(self, now: float) -> _Tick | Decision | None:
        """What to act on at ``now`` (called under the lock); while the observation is incomplete, the safety
        layer's verdict on sending nothing (a hold, with its reasons, once inputs go stale)."""
        if self.cfg.lockstep and self._pose_seq == self._acted_seq:
            return None
        if self._pacing_left(now) > 0:
            return None
        got = self._observation()
        if got is None:
            return self._note(self.safety.filter_twist((0, 0, 0), (0, 0, 0), now, (0, 0, 0)))
        obs, ee, stamp = got
        if stamp < self.min_stamp or (self.cfg.lockstep and not self._answers_last_command(stamp)):
            return None  # an observation of the last episode, or (lockstep) not yet the twin's answer
        return _Tick(obs, ee, self._arm_q.copy(), stamp, self._pose_seq, self._instruction,
                     max(self._arrival.values()))

    def _pacing_left(self, now: float) -> float:
        """Joint mode in lockstep: seconds until the next joint command may go out (one control period after the
        last); 0 otherwise."""
        if self.ik is None or not self.cfg.lockstep:
            return 0.0
        return max(0.0, self._published_at + self.cfg.dt - now)

    def _decide(self, action: np.ndarray, tick: _Tick, now: float) -> tuple[Decision, np.ndarray | None]:
        """The safety layer's decision on ``action`` (7,) and, in joint mode, the IK's joint targets (n,) rad it
        filtered; marks the observation acted on."""
        if self.ik is None:
            c = self.cfg
            lin, ang, opening = action_to_command(action, c.dt, c.pos_scale, c.rot_scale, c.finger_open)
            with self._lock:
                self._acted_seq = tick.seq
                return self.safety.filter_twist(lin, ang, now, tick.ee, gripper=opening), None
        asked, self._target_rot = self.ik.solve(tick.q, action)
        opening = action_to_command(action, self.cfg.dt, self.cfg.pos_scale, self.cfg.rot_scale,
                                    self.cfg.finger_open)[2]
        with self._lock:
            self._acted_seq = tick.seq
            return self.safety.filter_joint_target(tuple(map(float, asked)), now, gripper=opening), asked

    def _trajectory(self, header: m.Header, joints: list[str], positions: list[float]) -> m.JointTrajectory:
        """A one-point JointTrajectory: reach ``positions`` in one control period."""
        point = m.JointTrajectoryPoint(positions=positions, time_from_start=m.Duration(0, int(self.cfg.dt * 1e9)))
        return m.JointTrajectory(header=header, joint_names=list(joints), points=[point])

    def _publish(self, decision: Decision, action: np.ndarray, asked: np.ndarray | None, now: float) -> None:
        """The fingers, then the arm's command, one stamp; recorded in ``sent``."""
        c = self.cfg
        _, _, opening = action_to_command(action, c.dt, c.pos_scale, c.rot_scale, c.finger_open)
        opening = float(np.clip(opening, 0.0, c.finger_open))
        header = m.Header(stamp=m.stamp(now), frame_id=c.base_frame)
        self.pub_gripper.publish(self._trajectory(header, c.finger_joints, [opening] * len(c.finger_joints)))
        command = decision.command
        if asked is None:
            self.pub_twist.publish(m.TwistStamped(header=header, twist=m.Twist(linear=m.Vector3(*command[:3]),
                                                                                angular=m.Vector3(*command[3:]))))
            self.sent.append((now, tuple(command[:3]), tuple(command[3:]), opening))
            self._published_at = self.clock()
            return
        self.pub_arm.publish(self._trajectory(header, c.arm_joints, list(command)))
        self.ik.commit(self._target_rot)
        self._published_at = self.clock()
        self.sent.append(JointCommand(now, tuple(map(float, asked)), command, decision.reference, decision.dt,
                                      opening))

    def _note(self, decision: Decision) -> Decision:
        """Log a hold when its reasons change, and every clamp."""
        if decision.hold or decision.changes:
            text = decision.describe()
            key = "; ".join(decision.reasons) if decision.hold else text
            if key != self._last_log:
                log.info("%s", text)
                self.decisions.append(text)
            self._last_log = key
        else:
            self._last_log = ""
        return decision

    # ---- loop ------------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, max_s: float | None = None) -> None:
        """Tick at the control rate (in lockstep: as soon as a new observation arrives, at most one period apart)
        until ``stop`` is set or ``max_s`` passes."""
        stop = stop or threading.Event()
        end = None if max_s is None else time.monotonic() + max_s
        period = self.cfg.dt
        next_tick = time.monotonic()
        while not stop.is_set() and (end is None or time.monotonic() < end):
            if self.cfg.lockstep:
                self._wake.wait(timeout=self._wait_s(period))
                self._wake.clear()
            else:
                next_tick += period
                self._sleep_until(next_tick)
            self.step()

    def _drop_plan(self) -> None:
        """On hold: forget the chunk in flight (the policy replans from what it sees next) and, in joint mode, the
        IK's anchor (the arm may move before the next command: re-anchor on what is measured then)."""
        self._chunk.clear()
        if self.ik is not None:
            self.ik.reset()

    def _sleep_until(self, tick: float) -> None:
        """Sleep until ``tick`` (``time.monotonic()``); should the watchdog trip first, hold at that moment rather
        than at the tick (a hold sends nothing, so it keeps no schedule; the next tick acts on what is fresh then)."""
        with self._lock:
            expiry = self.safety.watchdog_expiry()
        trip = None if expiry is None else time.monotonic() + expiry - self.clock()
        if trip is not None and time.monotonic() < trip < tick:  # fresh now, stale before the tick
            time.sleep(max(0.0, trip - time.monotonic()) + 1e-3)  # just past the expiry: the input is stale then
            now = self.clock()
            with self._lock:
                decision = self.safety.filter_twist((0, 0, 0), (0, 0, 0), now, (0, 0, 0))  # the verdict, no command
            if decision.hold:
                self._drop_plan()
                self._note(decision)
        time.sleep(max(0.0, tick - time.monotonic()))

    def wait_for_new_input(self, timeout: float) -> bool:
        """Block until an observation, expert or e-stop message arrives, or until an observation held back by the
        joint-mode pacing may be acted on (for callers driving ``step`` themselves)."""
        ok = self._wake.wait(self._wait_s(timeout))
        self._wake.clear()
        return ok

    def _wait_s(self, timeout: float) -> float:
        """``timeout``, or less while an observation waits for the joint-mode pacing."""
        with self._lock:
            pending = self._pose_seq != self._acted_seq
        left = self._pacing_left(self.clock()) if pending else 0.0
        return min(timeout, left) if left > 0 else timeout
