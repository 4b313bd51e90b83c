"""Faults at the policy node's inputs (issue 30), each against the bound it must keep.

- A camera publisher process is SIGKILLed while a state publisher process goes on: no command leaves on an image
  older than ``watchdog_s`` (0.1 s, MoveIt Servo's timeout) and the hold comes at most one control period later.
- Hypothesis-generated malformed messages (wrong sizes, encodings, NaN and inf, huge claimed images, stamps from the
  past, the future, zero or out of order, e-stop toggles), interleaved with valid ones and control ticks, and a
  policy that asks for wild actions (+-10, NaN, inf): nothing raises, every command sent is inside the limits and
  none is sent while a needed input is stale or the e-stop is latched. The same on a smaller sample over real DDS.
- The e-stop from another process over DDS: pressed holds; released does not release; a reset while pressed is
  refused; only a reset after the release lets commands flow again.

The node runs with ``configs/robots/twin.yaml`` at 32 px, ``watchdog_s`` 0.1 and ``lockstep`` off (it ticks at the
control rate, as on a real arm). Publishers in other processes are ``fault_publisher.py`` children.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cyclonedds")

from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from robots.config import RobotConfig, load_robot_config  # noqa: E402
from robots.ros2 import messages as m  # noqa: E402
from robots.ros2.node import PolicyNode  # noqa: E402
from robots.ros2.transport import RELIABLE, CycloneTransport, free_domain  # noqa: E402
from robots.safety import Decision  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "robots" / "twin.yaml"
CHILD = Path(__file__).with_name("fault_publisher.py")
SMALL = 32  # px
T0 = 1_700_000_000.0  # the fake clock's start (a wall-clock time, as the node's stamps are)


def fault_config() -> RobotConfig:
    """twin.yaml at 32 px with MoveIt Servo's 0.1 s watchdog, ticking at the control rate."""
    data = load_robot_config(CONFIG).with_image_size(SMALL).model_dump()
    data["safety"]["watchdog_s"] = 0.1
    data.update(lockstep=False, idle_republish_s=0.05)
    return RobotConfig.model_validate(data)


CFG = fault_config()
STREAMS = ["joint_state", "pose", *(f"image/{c}" for c in CFG.cameras)]
ARM_OK = [0.0, 0.2, 0.0, -1.8, 0.0, 2.0, 0.8]  # rad, inside every Panda limit


class Steady:
    """An ActionSource that always asks for the same small move, fingers open."""

    def reset(self) -> None:
        pass

    def __call__(self, obs, instruction, stamp):
        return np.array([[0.1, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]] * 4, np.float32)


class Wild:
    """A deterministic ActionSource: the drawn chunks in turn (None: not ready), whatever they hold."""

    def __init__(self, chunks: list[list[list[float]] | None]):
        self.chunks, self.calls = chunks, 0

    def reset(self) -> None:
        pass

    def __call__(self, obs, instruction, stamp):
        chunk = self.chunks[self.calls % len(self.chunks)]
        self.calls += 1
        return None if chunk is None else np.array(chunk, dtype=np.float64)


# ---- an in-process transport for the fuzz ------------------------------------------------------------------------


@dataclass
class _Sub:
    topic: str
    callback: object


@dataclass
class InProcess:
    """The ``Transport`` Protocol in one process: ``deliver`` calls a topic's callbacks as a DDS listener does, but
    lets an exception escape (Cyclone's listener would only log it); every published message is kept by topic."""

    callbacks: dict[str, list] = field(default_factory=lambda: defaultdict(list))
    published: dict[str, list] = field(default_factory=lambda: defaultdict(list))

    def publisher(self, topic, msg_type, qos=RELIABLE):
        transport = self

        class Pub:
            def publish(self, msg):
                transport.published[topic].append(msg)

            def matched(self):
                return 1

        return Pub()

    def subscribe(self, topic, msg_type, callback=None, qos=RELIABLE):
        self.callbacks[topic].append(callback)
        return _Sub(topic, callback)

    def deliver(self, topic: str, msg) -> None:
        for cb in self.callbacks[topic]:
            cb(msg)

    def close(self) -> None:
        pass


# ---- message makers: (message, valid) ----------------------------------------------------------------------------

IMAGE_BAD = ["shape", "huge", "short", "empty", "narrow_step", "zero", "bgr8", "mono8", "jpeg"]
JOINT_OK = ["ok", "no_fingers", "no_velocity", "short_velocity"]
JOINT_BAD = ["renamed", "missing", "extra", "dup", "short", "nan", "inf", "nan_finger", "nan_velocity", "range",
             "empty"]
POSE_BAD = ["nan", "inf", "quat_nan", "quat_zero", "quat_long"]
STAMP_OK = ["fresh", "fresh", "fresh", "late"]  # late: older than the watchdog, younger than max_stamp_age_s
STAMP_BAD = ["past", "future", "zero", "negative", "nanosec", "repeat", "older"]


def make_stamp(kind: str, now: float, lag: float, last_valid: float | None) -> tuple[m.Time, bool]:
    """A header stamp of ``kind`` at ``now`` (``lag``: a draw in [0, 1)); True if a node must accept it."""
    last = last_valid if last_valid is not None else 0.0
    return {
        "fresh": (m.stamp(now - 0.02 * lag), True),
        "late": (m.stamp(now - 0.1 - 0.8 * lag), True),
        "past": (m.stamp(now - CFG.safety.max_stamp_age_s - 0.5 - lag), False),
        "future": (m.stamp(now + CFG.safety.max_clock_skew_s + 0.1 + lag), False),
        "zero": (m.Time(0, 0), False),
        "negative": (m.Time(-int(now), 0), False),
        "nanosec": (m.Time(int(now), 3_999_999_999), False),  # nanosec out of range: ~4 s in the future
        "repeat": (m.stamp(last), False),  # the last accepted stamp again
        "older": (m.stamp(last - 0.001 - 0.01 * lag), False),
    }[kind]


def make_image(kind: str, stamp: m.Time, camera: str) -> tuple[m.Image, bool]:
    s = SMALL
    h, w, enc, step, n = s, s, "rgb8", 3 * s, 3 * s * s
    valid = kind in ("ok", "padded")
    if kind == "padded":  # rows padded past width * 3: allowed by sensor_msgs/Image
        step, n = 3 * s + 4, (3 * s + 4) * s
    elif kind == "shape":
        h = w = s // 2
        step, n = 3 * w, 3 * w * h
    elif kind == "huge":  # claims a 1e9 x 1e9 image (step 3e9 B, near uint32's top), carries 3 KB
        h = w = 1_000_000_000
        step = 3 * w
    elif kind == "short":
        n -= 1
    elif kind == "empty":
        n = 0
    elif kind == "narrow_step":
        step, n = 3 * s - 6, (3 * s - 6) * s
    elif kind == "zero":
        h, n = 0, 0
    elif kind in ("bgr8", "jpeg"):
        enc = kind
    elif kind == "mono8":
        enc, step, n = "mono8", s, s * s
    data = bytes((i * 7) % 251 for i in range(n))
    msg = m.Image(header=m.Header(stamp=stamp, frame_id=f"{camera}_optical_frame"), height=h, width=w, encoding=enc,
                  is_bigendian=0, step=step, data=data)
    return msg, valid


def make_joint_state(kind: str, stamp: m.Time) -> tuple[m.JointState, bool]:
    names = list(CFG.arm_joints) + list(CFG.finger_joints)
    pos = ARM_OK + [0.03, 0.03]
    vel = [0.0] * 9
    if kind == "no_fingers":
        names, pos, vel = names[:7], pos[:7], vel[:7]
    elif kind == "no_velocity":
        vel = []
    elif kind == "short_velocity":
        vel = vel[:3]
    elif kind == "renamed":
        names[2] = "joint_3"
    elif kind == "missing":
        del names[4], pos[4], vel[4]
    elif kind == "extra":
        names, pos, vel = names + ["mystery"], pos + [0.0], vel + [0.0]
    elif kind == "dup":
        names[1] = names[0]
    elif kind == "short":
        pos = pos[:5]
    elif kind in ("nan", "inf"):
        pos[3] = math.nan if kind == "nan" else math.inf
    elif kind == "nan_finger":
        pos[8] = math.nan
    elif kind == "nan_velocity":
        vel[0] = math.nan
    elif kind == "range":
        pos[3] = 1.0  # joint4's upper limit is -0.07 rad
    elif kind == "empty":
        names, pos, vel = [], [], []
    msg = m.JointState(header=m.Header(stamp=stamp), name=names, position=pos, velocity=vel, effort=[])
    return msg, kind in JOINT_OK


def make_pose(kind: str, stamp: m.Time, position: tuple[float, float, float]) -> tuple[m.PoseStamped, bool]:
    p, q = list(position), [0.0, 1.0, 0.0, 0.0]  # x, y, z, w: the gripper pointing down
    if kind == "nan":
        p[1] = math.nan
    elif kind == "inf":
        p[2] = -math.inf
    elif kind == "quat_nan":
        q[3] = math.nan
    elif kind == "quat_zero":
        q = [0.0, 0.0, 0.0, 0.0]
    elif kind == "quat_long":
        q = [0.0, 3.0, 0.0, 0.0]
    msg = m.PoseStamped(header=m.Header(stamp=stamp, frame_id=CFG.base_frame),
                        pose=m.Pose(position=m.Point(*p), orientation=m.Quaternion(*q)))
    return msg, kind == "ok"


# ---- the oracle: what the node may do, from what was fed ---------------------------------------------------------


class Oracle:
    """Tracks, from the messages fed and their labels, when a command is allowed: every needed stream has a valid
    message with ``min(stamp, arrival)`` within ``watchdog_s`` of the tick, and the e-stop is not latched."""

    def __init__(self, cfg: RobotConfig):
        self.cfg = cfg
        self.fresh: dict[str, float] = {}
        self.last_stamp: dict[str, float] = {}
        self.pose: tuple[float, float, float] | None = None
        self.pressed = self.latched = False

    def fed(self, stream: str, msg, valid: bool, now: float) -> None:
        if not valid:
            return
        stamp = m.to_seconds(msg.header.stamp)
        if stamp <= self.last_stamp.get(stream, -math.inf):
            return  # out of order: refused
        self.last_stamp[stream], self.fresh[stream] = stamp, min(stamp, now)
        if stream == "pose":
            p = msg.pose.position
            self.pose = (p.x, p.y, p.z)

    def estop(self, pressed: bool) -> None:
        self.pressed = pressed
        self.latched = self.latched or pressed

    def reset(self) -> None:
        if not self.pressed:
            self.latched = False

    def stale(self, now: float) -> list[str]:
        """Why no command may go out at ``now`` (empty: one may)."""
        why = ["estop"] if self.latched else []
        why += [s for s in STREAMS if now - self.fresh.get(s, -math.inf) > self.cfg.safety.watchdog_s]
        return why


def check_command(cfg: RobotConfig, twist: m.TwistStamped, fingers: m.JointTrajectory, ee, now: float) -> None:
    """A command inside the limits: finite, speeds under the caps, the end effector kept in (or moving back into)
    the workspace box over one control period, each finger's opening in [0, finger_open]."""
    s = cfg.safety
    lin = [twist.twist.linear.x, twist.twist.linear.y, twist.twist.linear.z]
    ang = [twist.twist.angular.x, twist.twist.angular.y, twist.twist.angular.z]
    openings = list(fingers.points[0].positions)
    assert all(math.isfinite(v) for v in lin + ang + openings), (lin, ang, openings)
    assert math.hypot(*lin) <= s.max_linear_speed * (1 + 1e-9), lin
    assert math.hypot(*ang) <= s.max_angular_speed * (1 + 1e-9), ang
    assert all(0.0 <= o <= cfg.finger_open for o in openings) and len(openings) == len(cfg.finger_joints), openings
    dt = s.control_period_s
    for v, p, lo, hi in zip(lin, ee, s.workspace_min, s.workspace_max, strict=True):
        assert min((lo - p) / dt, 0.0) - 1e-9 <= v <= max((hi - p) / dt, 0.0) + 1e-9, (lin, ee)
    assert twist.header.stamp == fingers.header.stamp == m.stamp(now)


# ---- the fuzz ----------------------------------------------------------------------------------------------------

def mostly(common, rare, p: float = 0.85):
    """``common`` with probability about ``p``, else ``rare`` (so that commands do flow between the faults)."""
    return st.floats(0.0, 1.0).flatmap(lambda u: common if u < p else rare)


WILD = st.sampled_from([-10.0, 10.0, 1e300, math.nan, math.inf, -math.inf])
ACTION = st.lists(mostly(st.floats(-1.5, 1.5), WILD, 0.9), min_size=7, max_size=7)
CHUNKS = st.lists(mostly(st.lists(ACTION, min_size=1, max_size=4), st.none()), min_size=1, max_size=6)
POSITION = st.tuples(st.floats(0.0, 1.0), st.floats(-0.6, 0.6), st.floats(-0.1, 0.7))
LAG = st.floats(0.0, 0.999)
STAMP = st.sampled_from(STAMP_OK + STAMP_BAD)
IMAGE = st.tuples(st.sampled_from(["ok", "padded", *IMAGE_BAD]), STAMP, LAG)
JOINTS = st.tuples(st.sampled_from(JOINT_OK + JOINT_BAD), STAMP, LAG)
POSE = st.tuples(st.sampled_from(["ok", *POSE_BAD]), STAMP, LAG, POSITION)
FRESH = st.just(("ok", "fresh", 0.0))
ROUND = st.tuples(st.just("round"), st.floats(0.0, 0.08), st.tuples(*[mostly(FRESH, IMAGE)] * len(CFG.cameras)),
                  mostly(FRESH, JOINTS), mostly(st.tuples(FRESH, POSITION).map(lambda x: (*x[0], x[1])), POSE))
OPS = st.one_of(
    ROUND,  # advance the clock, one message per stream (mostly valid), tick: the node's life, faults mixed in
    st.one_of(st.tuples(st.just("image"), st.sampled_from(CFG.cameras), IMAGE),
    st.tuples(st.just("joints"), JOINTS),
    st.tuples(st.just("pose"), POSE),
    st.tuples(st.just("advance"), st.floats(0.0, 0.3)),
    st.tuples(st.just("tick")),
    st.tuples(st.just("estop"), mostly(st.just(False), st.just(True), 0.6)),
    st.tuples(st.just("reset")),
    st.tuples(st.just("instruction"), st.text(max_size=20))),
)


class Feed:
    """Feeds ops to a node through its subscriptions, ticks it and checks every command against the oracle."""

    def __init__(self, chunks, transport):
        self.now = T0
        self.transport = transport
        self.node = PolicyNode(CFG, self.transport, source=Wild(chunks), clock=lambda: self.now)
        self.oracle = Oracle(CFG)
        self.sent = 0

    def feed(self, stream: str, msg, valid: bool) -> None:
        tp = CFG.topics
        topic = {"joint_state": tp.joint_states, "pose": tp.pose}.get(stream) or tp.image_topic(stream[6:])
        self.oracle.fed(stream, msg, valid, self.now)
        self.transport.deliver(topic, msg)

    def image(self, cam: str, shape: str, stamp_kind: str, lag: float) -> None:
        stamp, ok_stamp = make_stamp(stamp_kind, self.now, lag, self.oracle.last_stamp.get(f"image/{cam}"))
        msg, ok = make_image(shape, stamp, cam)
        self.feed(f"image/{cam}", msg, ok and ok_stamp)

    def joints(self, what: str, stamp_kind: str, lag: float) -> None:
        stamp, ok_stamp = make_stamp(stamp_kind, self.now, lag, self.oracle.last_stamp.get("joint_state"))
        msg, ok = make_joint_state(what, stamp)
        self.feed("joint_state", msg, ok and ok_stamp)

    def pose(self, what: str, stamp_kind: str, lag: float, position) -> None:
        stamp, ok_stamp = make_stamp(stamp_kind, self.now, lag, self.oracle.last_stamp.get("pose"))
        msg, ok = make_pose(what, stamp, position)
        self.feed("pose", msg, ok and ok_stamp)

    def op(self, op: tuple) -> None:
        kind, *args = op
        if kind == "round":
            dt, images, joints, pose = args
            self.now += dt
            for cam, image in zip(CFG.cameras, images, strict=True):
                self.image(cam, *image)
            self.joints(*joints)
            self.pose(*pose)
            self.tick()
        elif kind == "image":
            self.image(args[0], *args[1])
        elif kind == "joints":
            self.joints(*args[0])
        elif kind == "pose":
            self.pose(*args[0])
        elif kind == "advance":
            self.now += args[0]
        elif kind == "tick":
            self.tick()
        elif kind == "estop":
            self.oracle.estop(args[0])
            self.transport.deliver(CFG.topics.estop, m.Bool(args[0]))
        elif kind == "reset":
            self.oracle.reset()
            self.transport.deliver(CFG.topics.estop_reset, m.Bool(True))
        elif kind == "instruction":
            self.transport.deliver(CFG.topics.instruction, m.String(args[0]))

    def tick(self) -> None:
        ee = self.oracle.pose
        self.node.step(self.now)
        twists = self.transport.published[CFG.topics.twist]
        fingers = self.transport.published[CFG.topics.gripper]
        assert len(twists) == len(fingers) == len(self.node.sent)
        if len(twists) > self.sent:
            assert len(twists) == self.sent + 1
            self.sent += 1
            why = self.oracle.stale(self.now)
            assert not why, f"a command at {self.now - T0:.3f} s while {why} (last valid {self.oracle.fresh})"
            assert ee is not None
            check_command(CFG, twists[-1], fingers[-1], ee, self.now)
        self.now += 1e-4  # the next tick is later


class DdsTap(CycloneTransport):
    """A real CycloneTransport on loopback whose ``deliver`` publishes on DDS and waits until the node's callback
    for that message has run (its listener thread); exceptions in callbacks are kept in ``raised`` (Cyclone's
    listener only logs them). Published messages are kept by topic, as ``InProcess`` keeps them."""

    def __init__(self, domain_id: int):
        super().__init__(domain_id=domain_id)
        self.published: dict[str, list] = defaultdict(list)
        self.raised: list[BaseException] = []
        self._handled: dict[str, int] = defaultdict(int)
        self._cond = threading.Condition()
        self._pubs: dict[str, object] = {}

    def publisher(self, topic, msg_type, qos=RELIABLE):
        pub, kept = super().publisher(topic, msg_type, qos), self.published[topic]

        class Kept:
            def publish(self, msg):
                kept.append(msg)
                pub.publish(msg)

            def matched(self):
                return pub.matched()

        return Kept()

    def subscribe(self, topic, msg_type, callback=None, qos=RELIABLE):
        def counted(msg):
            try:
                callback(msg)
            except BaseException as e:
                self.raised.append(e)
                raise
            finally:
                with self._cond:
                    self._handled[topic] += 1
                    self._cond.notify_all()

        sub = super().subscribe(topic, msg_type, counted if callback else None, qos)
        self._pubs[topic] = super().publisher(topic, msg_type, RELIABLE)  # the fault side of the wire
        return sub

    def deliver(self, topic: str, msg) -> None:
        pub = self._pubs[topic]
        with self._cond:
            n = self._handled[topic]
        deadline = time.monotonic() + 10
        while pub.matched() == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        for _ in range(3):  # a best-effort reader may drop a sample; the same message again is at worst refused
            pub.publish(msg)
            with self._cond:
                if self._cond.wait_for(lambda: self._handled[topic] > n, timeout=2.0):
                    return
        raise AssertionError(f"the node never handled a message on {topic}")


GOOD_CHUNK = [[[0.5, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]]]
OK = ("ok", "fresh", 0.0)


def ok_round(position=(0.5, 0.0, 0.3), dt: float = 0.05) -> tuple:
    return ("round", dt, (OK,) * len(CFG.cameras), OK, (*OK, position))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=20, max_size=60), chunks=CHUNKS)
# regressions, each found by this test: an image the safety layer accepted but the policy cannot read (bgr8, mono8)
# raised in step(); a NaN gripper action went out as a NaN finger target; the pose was never checked, so a command
# went out on a stale pose, and on an out-of-order one that put the end effector back in the box's middle
@example(ops=[ok_round(), ("image", "agentview", ("bgr8", "fresh", 0.0)), ("tick",)], chunks=GOOD_CHUNK)
@example(ops=[ok_round(), ("image", "wrist", ("mono8", "fresh", 0.0)), ("tick",)], chunks=GOOD_CHUNK)
@example(ops=[ok_round()], chunks=[[[0.5, 0.0, 0.0, 0.0, 0.0, 0.0, math.nan]]])
@example(ops=[ok_round(), ("advance", 0.15), ("image", "agentview", OK), ("image", "wrist", OK), ("joints", OK),
              ("tick",)], chunks=GOOD_CHUNK)
@example(ops=[ok_round((0.849, 0.0, 0.3)), ("pose", ("ok", "older", 0.0, (0.5, 0.0, 0.3))), ("tick",)],
         chunks=GOOD_CHUNK)
def test_malformed_inputs_never_crash_the_node_nor_leave_the_limits(ops, chunks):
    """In one process, through the node's subscription callbacks, on a fake clock: no exception, every command in
    the limits, none while a needed input is stale or the e-stop latched (see ``Feed.tick``)."""
    feed = Feed(chunks, InProcess())
    for op in ops:
        feed.op(op)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=20, max_size=40), chunks=CHUNKS)
def test_malformed_inputs_over_dds(ops, chunks):
    """The same over real DDS on loopback (a smaller sample): each message is serialised, sent and handled on the
    node's listener thread before the next op; no callback raised."""
    with DdsTap(free_domain()) as tap:
        feed = Feed(chunks, tap)
        for op in ops:
            feed.op(op)
        assert not tap.raised, tap.raised
        assert feed.sent == len(feed.node.sent)


def test_a_joint_state_without_the_fingers_keeps_the_last_finger_positions():
    """A gripper may publish its joints apart: the arm's joint state alone is fresh, the fingers stay as last seen
    (before any, the node has no state to act on)."""
    seen = []

    class Spy(Wild):
        def __call__(self, obs, instruction, stamp):
            seen.append(obs["state"][0, 6:].tolist())
            return super().__call__(obs, instruction, stamp)

    feed = Feed(GOOD_CHUNK, InProcess())
    feed.node.source = Spy(GOOD_CHUNK)
    feed.now += 0.05
    for cam in CFG.cameras:
        feed.image(cam, *OK)
    feed.joints("no_fingers", "fresh", 0.0)
    feed.pose(*OK, (0.5, 0.0, 0.3))
    feed.tick()
    assert seen == [] and feed.sent == 0  # no finger positions yet: nothing to act on
    feed.op(ok_round())  # fingers at 0.03
    feed.op(("round", 0.05, (OK,) * len(CFG.cameras), ("no_fingers", "fresh", 0.0), (*OK, (0.5, 0.0, 0.3))))
    assert seen == [pytest.approx([0.03, 0.03])] * 2 and feed.sent == 2


# ---- publishers in other processes -------------------------------------------------------------------------------


class TickLog(PolicyNode):
    """A PolicyNode that keeps every tick's decision (``ticks``), as ``run()`` drops them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ticks: list = []

    def step(self, now: float | None = None):
        decision = super().step(now)
        if decision is not None:
            self.ticks.append(decision)
        return decision


def spawn(domain: int, role: str) -> subprocess.Popen:
    """A ``fault_publisher.py`` child in ``role``, once it says ready (its topics matched)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, str(CHILD), str(domain), role, str(SMALL)], env=env, cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready", f"the {role} publisher did not start"
    return child


def end(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.kill()
    child.wait(timeout=30)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.005)


@pytest.fixture
def running_node():
    """A TickLog node (Steady source, ``fault_config``) ticking in ``run()`` on a fresh domain, fed by a state
    publisher process; yields (node, transport, domain)."""
    domain, stop = free_domain(), threading.Event()
    with CycloneTransport(domain_id=domain) as t:
        node = TickLog(CFG, t, source=Steady())
        state = spawn(domain, "state")
        loop = threading.Thread(target=node.run, kwargs={"stop": stop}, daemon=True)
        loop.start()
        try:
            yield node, t, domain
        finally:
            stop.set()
            loop.join(timeout=10)
            end(state)


def flowing(node: TickLog, n: int = 5, timeout: float = 60) -> None:
    """Until ``n`` more commands have gone out."""
    first = len(node.sent)
    wait_for(lambda: len(node.sent) >= first + n, timeout, f"{n} commands")


KILLS = 5


def image_hold(node: PolicyNode, after: float):
    """The first hold on an image's watchdog the safety layer decided after ``after`` (node clock), or None."""
    with node._lock:
        log = list(node.safety.log)
    return next((d for d in log if isinstance(d, Decision) and d.hold and d.now > after
                 and any(r.startswith("watchdog: image/") for r in d.reasons)), None)


def test_a_killed_camera_publisher_holds_the_node_within_the_watchdog(running_node):
    """A camera publisher process (30 Hz, both cameras) is SIGKILLed, 5 times, while the state publisher goes on and
    the node ticks in ``run()``.

    Measured per kill, on the node's clock (``time.time()``, the clock of every stamp): ``t_image``, the header
    stamp of the newest image the node accepted, the earliest over the cameras (the safety layer dates an image by
    min(stamp, arrival), and on one machine the stamp comes first): the watchdog counts from it. ``t_command``: the
    ``now`` of the last command the node sent. ``t_hold``: the ``now`` of the safety layer's first hold decision
    on an image's watchdog after that command.

    Bounds: ``t_command - t_image <= watchdog_s`` (no command leaves on an image older than 0.1 s) and ``watchdog_s
    < t_hold - t_image <= watchdog_s + dt`` (the hold comes after the images went stale, at most one control
    period, 0.05 s, later; ``run()`` holds at the expiry itself, so scheduling delays have that period as margin).
    """
    node, _, domain = running_node
    s = CFG.safety
    rows = []
    for _ in range(KILLS):
        cams = spawn(domain, "cameras")
        try:
            flowing(node)
            t_kill = time.time()
            cams.kill()  # SIGKILL
        finally:
            end(cams)
        wait_for(lambda: not node.sent or image_hold(node, node.sent[-1][0]) is not None, 5, "image-watchdog hold")
        with node._lock:
            t_image = min(m.to_seconds(node._images[c].header.stamp) for c in CFG.cameras)
            t_command = node.sent[-1][0]
        t_hold = image_hold(node, t_command).now
        rows.append((t_command - t_image, t_hold - t_image, t_hold - t_kill))
    print("\nkill  last command after last image  hold after last image  hold after SIGKILL  (ms)")
    for i, (cmd, hold, kill) in enumerate(rows):
        print(f"{i:4d}  {cmd * 1e3:28.1f}  {hold * 1e3:21.1f}  {kill * 1e3:18.1f}")
    for cmd, hold, _ in rows:
        assert cmd <= s.watchdog_s, rows
        assert s.watchdog_s < hold <= s.watchdog_s + CFG.dt, rows


def test_estop_from_another_process_latches_until_an_explicit_reset(running_node):
    """``/estop`` and ``/estop/reset`` from an e-stop publisher process over DDS: pressed latches (no command with
    a later ``now``); a reset while pressed is refused; released does not release (0.5 s of held ticks); only a
    reset after the release lets commands flow again."""
    node, _, domain = running_node
    cams, button = spawn(domain, "cameras"), spawn(domain, "estop")

    def send(word: str) -> None:
        button.stdin.write(word + "\n")
        button.stdin.flush()
        assert button.stdout.readline().strip() == "sent"

    def latched_at() -> float:
        with node._lock:
            return next(d.now for d in node.safety.log if getattr(d, "reasons", ()) == ("estop: pressed, latched",))

    try:
        flowing(node)
        send("press")
        wait_for(lambda: node.safety.estop_latched, 10, "latch")
        t_press = latched_at()
        send("reset")  # still pressed: refused
        wait_for(lambda: node.safety.refused["estop_pressed"] == 1, 10, "refused reset")
        assert node.safety.estop_latched
        send("release")
        wait_for(lambda: not node.safety.estop_asserted, 10, "release")
        i0, n0 = len(node.ticks), len(node.sent)
        time.sleep(0.5)
        held = node.ticks[i0:]
        assert len(node.sent) == n0 and node.safety.estop_latched
        assert len(held) >= 5 and all(d.hold and d.reasons[0].startswith("estop") for d in held), held[-3:]
        assert all(now < t_press for now, *_ in node.sent), "a command went out after the e-stop"
        send("reset")
        wait_for(lambda: not node.safety.estop_latched, 10, "reset")
        flowing(node, n=3, timeout=10)
    finally:
        end(button)
        end(cams)


def test_the_deadman_heartbeat_gates_commands():
    """With ``safety.deadman_s``, commands flow only while an enabling switch sends True on the heartbeat topic at
    least that often: none before the first, a hold after silence, a hold at once on False (let go)."""
    data = CFG.model_dump()
    data["safety"]["deadman_s"] = 0.2
    cfg = RobotConfig.model_validate(data)
    now = [T0]
    t = InProcess()
    node = PolicyNode(cfg, t, source=Steady(), clock=lambda: now[0])

    def observe():
        """One fresh observation 50 ms after the last, then a tick."""
        now[0] += 0.05
        stamp = m.stamp(now[0])
        for cam in cfg.cameras:
            t.deliver(cfg.topics.image_topic(cam), make_image("ok", stamp, cam)[0])
        t.deliver(cfg.topics.joint_states, make_joint_state("ok", stamp)[0])
        t.deliver(cfg.topics.pose, make_pose("ok", stamp, (0.5, 0.0, 0.3))[0])
        return node.step(now[0])

    def deadman(d) -> bool:
        return d.hold and any(r.startswith("deadman") for r in d.reasons)

    assert deadman(observe()) and node.sent == []  # no heartbeat yet
    for _ in range(3):
        t.deliver(cfg.topics.heartbeat, m.Bool(True))
        assert not observe().hold
    assert len(node.sent) == 3
    held = [observe() for _ in range(5)]  # 250 ms of silence
    assert not held[0].hold and not held[2].hold and deadman(held[4]), held  # 150 ms still within 0.2 s, 250 ms not
    t.deliver(cfg.topics.heartbeat, m.Bool(True))
    assert not observe().hold
    t.deliver(cfg.topics.heartbeat, m.Bool(False))  # let go: at once
    assert deadman(observe())
    assert len(t.published[cfg.topics.twist]) == len(node.sent) == 7
