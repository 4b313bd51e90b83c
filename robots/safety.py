"""The safety layer between a policy and a real arm: every command sent passes through ``SafetyLayer``.

Pure and clock-free: each method takes the time ``now`` (float seconds, the caller's clock), so tests are exact.
No ROS here; the bridge turns messages into the plain calls below and prints ``layer.log``.

Inputs (``on_joint_state``, ``on_image``, ``on_pose``, ``on_estop``, ``on_heartbeat``) are validated. A bad message
(NaN or inf, wrong size, unknown joint names, a stamp from the future, older than ``max_stamp_age_s`` or not newer
than the last one of its stream) is refused, counted in ``layer.refused`` and logged; it never raises.

Outputs (``filter_joint_target`` for a ros2_control JointTrajectory, ``filter_twist`` for a MoveIt Servo twist)
return a ``Decision``: hold (send nothing) or the command to send, with the reasons and every value changed.
Hold comes first, in this order: e-stop latched; watchdog (no joint state, no image of a configured camera, or once
a pose has come no end-effector pose, newer than ``watchdog_s``, as MoveIt Servo's 0.1 s incoming-command timeout);
deadman expired; malformed command.
Then the clamps, each a per-joint interval:

- acceleration (optional): the velocity may change by at most ``max_acceleration * dt`` from the last one;
- position: ``[position_lower, position_upper]``;
- step (optional): at most ``max_step`` from the reference (LeRobot's ``max_relative_target``);
- velocity: at most ``max_velocity * dt`` from the reference.

The reference is the last command sent, or after a hold (or at start) the measured position clipped into the
limits. Position, step and velocity intervals all contain the reference, so clipping into them one after the
other never leaves an earlier one: the command sent satisfies all three. Acceleration is applied first because
its interval may not contain the reference (a joint at full speed next to its limit cannot stop within one
step); where they conflict the hard limits win.

dt is the time since the last command sent, capped at ``control_period_s`` (one period for the first command
after a hold): give the controller at least ``control_period_s`` to reach a point (JointTrajectory's
time_from_start) and the joint speed stays under ``max_velocity``. The workspace box is enforced in twist mode
only (the layer has no forward kinematics); twists are in the box's (base) frame.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

Positive = Annotated[float, Field(gt=0)]

# bytes per pixel of the sensor_msgs/Image encodings a policy camera may send
ENCODING_BYTES = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2, "16UC1": 2, "32FC1": 4}
UNIT_QUATERNION_TOLERANCE = 0.01  # |norm - 1| a pose's orientation may be off by
TWIST_NAMES = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")


class SafetyConfig(BaseModel):
    """Limits of one arm. Per-joint lists are in ``joint_names`` order; angles in rad, lengths in m, times in s."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    joint_names: list[str] = Field(min_length=1, description="the arm's joints, in command order")
    position_lower: list[float] = Field(description="lower joint limit, rad (n)")
    position_upper: list[float] = Field(description="upper joint limit, rad (n)")
    max_velocity: list[Positive] = Field(description="joint speed limit, rad/s (n)")
    max_acceleration: list[Positive] | None = Field(None, description="rad/s^2 (n); None: not limited")
    max_step: Positive | list[Positive] | None = Field(None, description="max change per command, rad (1 or n)")
    control_period_s: Positive = Field(0.02, description="time a command is given; dt never exceeds it")
    workspace_min: tuple[float, float, float] = Field(description="end-effector box, base frame, m")
    workspace_max: tuple[float, float, float]
    max_linear_speed: Positive = Field(description="twist mode: end-effector speed cap, m/s")
    max_angular_speed: Positive = Field(description="twist mode: rotation speed cap, rad/s")
    watchdog_s: Positive = Field(0.1, description="hold unless joint state and every camera are newer than this")
    deadman_s: Positive | None = Field(None, description="hold unless a heartbeat came within this; None: off")
    max_stamp_age_s: Positive = Field(0.5, description="a message stamped further in the past is stale")
    max_clock_skew_s: float = Field(0.05, ge=0, description="a stamp further in the future is refused")
    state_margin: float = Field(0.1, ge=0, description="a measured position further outside the limits is refused")
    ignored_joints: list[str] = Field(default_factory=list, description="joint-state names skipped (e.g. fingers)")
    cameras: list[str] = Field(default_factory=list, description="cameras the watchdog requires")
    image_shape: tuple[int, int] | None = Field(None, description="expected (height, width); None: any")
    max_image_bytes: int = Field(32 * 2**20, gt=0)
    log_size: int = Field(1000, gt=0, description="entries kept in SafetyLayer.log")

    @model_validator(mode="after")
    def _check(self) -> SafetyConfig:
        n = len(self.joint_names)
        if len(set(self.joint_names)) != n:
            raise ValueError(f"joint_names has duplicates: {self.joint_names}")
        per_joint = {"position_lower": self.position_lower, "position_upper": self.position_upper,
                     "max_velocity": self.max_velocity, "max_acceleration": self.max_acceleration,
                     "max_step": self.max_step if isinstance(self.max_step, list) else None}
        for key, values in per_joint.items():
            if values is not None and len(values) != n:
                raise ValueError(f"{key} has {len(values)} values for {n} joints")
        for name, lo, hi in zip(self.joint_names, self.position_lower, self.position_upper, strict=True):
            if not lo < hi:
                raise ValueError(f"joint {name!r}: position_lower {lo} must be < position_upper {hi}")
        if not all(lo < hi for lo, hi in zip(self.workspace_min, self.workspace_max, strict=True)):
            raise ValueError(f"workspace_min {self.workspace_min} must be < workspace_max {self.workspace_max}")
        return self

    @property
    def steps(self) -> list[float] | None:
        """``max_step`` per joint (rad), or None."""
        if self.max_step is None or isinstance(self.max_step, list):
            return self.max_step
        return [self.max_step] * len(self.joint_names)


@dataclass(frozen=True)
class Change:
    """One value a rule changed: ``rule`` moved ``name`` (a joint, or a twist component) from ``asked`` to ``sent``."""

    rule: str
    name: str
    asked: float
    sent: float


@dataclass(frozen=True)
class Decision:
    """What ``filter_*`` did with one command.

    ``command``: joint positions (rad, n) or a twist (vx, vy, vz m/s, wx, wy, wz rad/s); None on hold.
    ``dt``: the seconds the command is meant to take (joint mode). ``reference``: the positions the step and
    velocity bounds were measured from (joint mode).
    """

    now: float
    hold: bool
    command: tuple[float, ...] | None
    reasons: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()
    dt: float | None = None
    reference: tuple[float, ...] | None = None

    @property
    def clamped(self) -> dict[str, tuple[float, float]]:
        """name -> (asked, sent) over all the rules that changed it."""
        out: dict[str, tuple[float, float]] = {}
        for c in self.changes:
            out[c.name] = (out.get(c.name, (c.asked, 0.0))[0], c.sent)
        return out

    def describe(self) -> str:
        if self.hold:
            return f"t={self.now:.3f} HOLD: " + "; ".join(self.reasons)
        rules = ", ".join(f"{c.rule} {c.name} {c.asked:.4g}->{c.sent:.4g}" for c in self.changes)
        return f"t={self.now:.3f} clamped: {rules}"


@dataclass(frozen=True)
class Refusal:
    """An input refused: ``stream`` ("joint_state", "image/<camera>", "estop_reset"), a ``reason`` code, a detail."""

    now: float
    stream: str
    reason: str
    detail: str

    def describe(self) -> str:
        return f"t={self.now:.3f} refused {self.stream}: {self.reason} ({self.detail})"


def finite_floats(values: object, n: int) -> tuple[float, ...] | None:
    """``values`` as n finite floats, or None if it is not a sequence of n finite numbers."""
    if isinstance(values, str | bytes):
        return None
    try:
        out = tuple(float(v) for v in values)  # type: ignore[attr-defined]
    except (TypeError, ValueError, OverflowError):
        return None
    return out if len(out) == n and all(math.isfinite(v) for v in out) else None


def is_time(t: object) -> bool:
    """A finite real number (seconds)."""
    return isinstance(t, Real) and not isinstance(t, bool) and math.isfinite(t)


def clip(x: float, lo: float, hi: float) -> float:
    return min(max(x, lo), hi)


class SafetyLayer:
    """The state of one arm's safety checks; see the module docstring for the rules and their order."""

    def __init__(self, cfg: SafetyConfig):
        if not isinstance(cfg, SafetyConfig):
            raise TypeError(f"SafetyLayer needs a SafetyConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.refused: Counter[str] = Counter()  # reason code -> refusals
        self.log: deque[Decision | Refusal] = deque(maxlen=cfg.log_size)  # holds, clamps and refusals
        self.estop_latched = False
        self.estop_asserted = False  # the last e-stop message said pressed
        self._stamps: dict[str, float] = {}  # stream -> last accepted stamp
        self._fresh: dict[str, float] = {}  # stream -> time of its last input: min(stamp, arrival)
        self._positions: tuple[float, ...] | None = None  # measured, rad (n)
        self._velocities: tuple[float, ...] | None = None  # measured, rad/s (n)
        self._heartbeat: float | None = None
        self._sent: tuple[float, ...] | None = None  # last joint command sent since the last hold
        self._sent_time = 0.0
        self._sent_velocity: tuple[float, ...] = ()

    # ---- inputs ----------------------------------------------------------------------------------------------

    def on_joint_state(self, stamp: float, names: Sequence[str], positions: Sequence[float],
                       velocities: Sequence[float] | None = None, *, now: float) -> bool:
        """A sensor_msgs/JointState (positions rad, velocities rad/s, in ``names`` order). True if accepted."""
        problem = self._stamp_problem("joint_state", stamp, now)
        problem = problem or self._joint_state_problem(names, positions, velocities)
        if problem:
            return self._refuse(now, "joint_state", *problem)
        order = [list(names).index(j) for j in self.cfg.joint_names]
        pos = finite_floats(positions, len(names))
        vel = finite_floats(velocities, len(names)) if velocities is not None else None
        self._positions = tuple(pos[i] for i in order)
        self._velocities = tuple(vel[i] for i in order) if vel else None
        self._accept("joint_state", stamp, now)
        return True

    def on_image(self, camera: str, stamp: float, height: int, width: int, encoding: str, step: int,
                 data_len: int, *, now: float, encodings: Sequence[str] | None = None) -> bool:
        """A sensor_msgs/Image's header and layout (``step``: bytes per row, ``data_len``: len(data)).
        ``encodings``: the ones the caller can read (None: any known). True if accepted."""
        stream = f"image/{camera}"
        if camera not in self.cfg.cameras:
            return self._refuse(now, stream, "camera", f"unknown camera, configured: {self.cfg.cameras}")
        problem = self._stamp_problem(stream, stamp, now)
        problem = problem or self._image_problem(height, width, encoding, step, data_len)
        if problem is None and encodings is not None and encoding not in encodings:
            problem = "image", f"encoding {encoding!r} not one of {list(encodings)} (what the policy reads)"
        if problem:
            return self._refuse(now, stream, *problem)
        self._accept(stream, stamp, now)
        return True

    def on_pose(self, stamp: float, position: Sequence[float], orientation: Sequence[float], *, now: float) -> bool:
        """A geometry_msgs/PoseStamped of the end effector (position m, orientation quaternion x, y, z, w, base
        frame). Once one is accepted the watchdog needs a fresh one too: twist mode keeps the end effector in the
        workspace from where it is. True if accepted."""
        problem = self._stamp_problem("pose", stamp, now)
        pos, quat = finite_floats(position, 3), finite_floats(orientation, 4)
        if problem is None and (pos is None or quat is None):
            problem = "values", f"position {position!r} / orientation {orientation!r} are not 3 / 4 finite numbers"
        elif problem is None and abs(math.hypot(*quat) - 1.0) > UNIT_QUATERNION_TOLERANCE:
            problem = "values", f"orientation {quat} is not a unit quaternion"
        if problem:
            return self._refuse(now, "pose", *problem)
        self._accept("pose", stamp, now)
        return True

    def on_estop(self, pressed: bool, now: float) -> None:
        """An e-stop message. Pressed latches; released does not unlatch (only ``reset_estop`` does).
        Anything but a plain False/0 counts as pressed."""
        released = isinstance(pressed, bool | int) and not pressed
        self.estop_asserted = not released
        if not released and not self.estop_latched:
            self.log.append(Decision(now, True, None, ("estop: pressed, latched",)))
        self.estop_latched = self.estop_latched or not released

    def reset_estop(self, now: float) -> bool:
        """The explicit release. Refused (False) while the last e-stop message still says pressed."""
        if self.estop_asserted:
            self._refuse(now, "estop_reset", "estop_pressed", "the e-stop is still pressed")
            return False
        self.estop_latched = False
        return True

    def forget_command(self) -> None:
        """Bound the next joint command from the measured state rather than the last command sent: the arm was
        moved by something else (a digital twin's episode reset puts it back at home)."""
        self._forget_sent()

    def on_heartbeat(self, now: float, alive: bool = True) -> None:
        """A deadman heartbeat at ``now``; ``alive=False`` (switch let go) expires the deadman at once."""
        self._heartbeat = now if alive is True and is_time(now) else None

    # ---- outputs ---------------------------------------------------------------------------------------------

    def filter_joint_target(self, target: Sequence[float] | Mapping[str, float], now: float,
                            gripper: float = 0.0) -> Decision:
        """A joint-position target (rad; n values in ``joint_names`` order, or name -> value) -> what to send;
        ``gripper``, the command sent with it, must be finite too (the caller clips it into its range)."""
        reasons = self._hold_reasons(now)
        asked = self._joint_vector(target)
        if asked is None:
            reasons.append(f"malformed: target must be {len(self.cfg.joint_names)} finite joint positions")
        if finite_floats([gripper], 1) is None:
            reasons.append("malformed: the gripper command must be a finite number")
        if self._sent is not None and not now > self._sent_time:
            reasons.append(f"clock: now {now} is not after the last command {self._sent_time}")
        if reasons:
            return self._hold(now, reasons)
        ref, v_prev, dt = self._reference(now)
        sent, changes = self._clamp_joints(asked, ref, v_prev, dt)
        self._sent_velocity = tuple((s - r) / dt for s, r in zip(sent, ref, strict=True))
        self._sent, self._sent_time = sent, now
        return self._record(Decision(now, False, sent, (), tuple(changes), dt, ref))

    def filter_twist(self, linear: Sequence[float], angular: Sequence[float], now: float,
                     ee_position: Sequence[float], gripper: float = 0.0) -> Decision:
        """A twist (linear m/s, angular rad/s, base frame) at end-effector position ``ee_position`` (m) -> what to
        send; ``gripper``, the command sent with it, must be finite too (the caller clips it into its range).
        Speeds are capped by scaling the vector; a linear component that would take the end effector out of the
        workspace box within ``control_period_s`` is cut to reach the boundary (outside the box, only motion back
        towards it is allowed)."""
        reasons = self._hold_reasons(now)
        lin, ang, ee = finite_floats(linear, 3), finite_floats(angular, 3), finite_floats(ee_position, 3)
        if lin is None or ang is None or ee is None or finite_floats([gripper], 1) is None:
            reasons.append("malformed: linear, angular and ee_position must be 3 finite numbers each, gripper one")
        if reasons:
            return self._hold(now, reasons)
        changes: list[Change] = []
        lin = self._cap_speed(lin, self.cfg.max_linear_speed, "linear_speed", TWIST_NAMES[:3], changes)
        ang = self._cap_speed(ang, self.cfg.max_angular_speed, "angular_speed", TWIST_NAMES[3:], changes)
        lin = self._keep_in_box(lin, ee, changes)
        return self._record(Decision(now, False, lin + ang, (), tuple(changes), self.cfg.control_period_s))

    # ---- input checks ----------------------------------------------------------------------------------------

    def _stamp_problem(self, stream: str, stamp: float, now: float) -> tuple[str, str] | None:
        if not (is_time(stamp) and is_time(now)):
            return "stamp", f"stamp {stamp!r} at now {now!r} is not a finite time"
        if stamp > now + self.cfg.max_clock_skew_s:
            return "future", f"stamp {stamp} is {stamp - now:.3f} s ahead of now"
        if now - stamp > self.cfg.max_stamp_age_s:
            return "stale", f"stamp {stamp} is {now - stamp:.3f} s old > {self.cfg.max_stamp_age_s}"
        last = self._stamps.get(stream)
        if last is not None and stamp <= last:
            return "out_of_order", f"stamp {stamp} is not after the last one {last}"
        return None

    def _joint_state_problem(self, names: Sequence[str], positions: Sequence[float],
                             velocities: Sequence[float] | None) -> tuple[str, str] | None:
        if isinstance(names, str | bytes) or not isinstance(names, Sequence) or not all(
                isinstance(n, str) for n in names):
            return "names", f"names {names!r} is not a list of strings"
        known = set(self.cfg.joint_names)
        if len(set(names)) != len(names) or not known <= set(names) or set(names) - known - set(
                self.cfg.ignored_joints):
            return "names", f"names {names} do not match {self.cfg.joint_names}"
        pos = finite_floats(positions, len(names))
        if pos is None or (velocities is not None and finite_floats(velocities, len(names)) is None):
            return "values", f"positions/velocities are not {len(names)} finite numbers"
        margin = self.cfg.state_margin
        for name, q in zip(names, pos, strict=True):
            if name in known:
                i = self.cfg.joint_names.index(name)
                if not self.cfg.position_lower[i] - margin <= q <= self.cfg.position_upper[i] + margin:
                    return "range", f"{name} measured at {q}, outside its limits by more than {margin}"
        return None

    def _image_problem(self, height: int, width: int, encoding: str, step: int,
                       data_len: int) -> tuple[str, str] | None:
        sizes = (height, width, step, data_len)
        if not all(isinstance(v, Integral) and not isinstance(v, bool) and v > 0 for v in sizes):
            return "image", f"height, width, step, data_len must be positive ints: {height, width, step, data_len}"
        if self.cfg.image_shape is not None and (height, width) != tuple(self.cfg.image_shape):
            return "image", f"shape {(height, width)} != expected {self.cfg.image_shape}"
        if encoding not in ENCODING_BYTES:
            return "image", f"encoding {encoding!r} not one of {sorted(ENCODING_BYTES)}"
        if step < width * ENCODING_BYTES[encoding] or data_len != step * height:
            return "image", f"step {step} / {data_len} bytes do not fit {height}x{width} {encoding}"
        if data_len > self.cfg.max_image_bytes:
            return "image", f"{data_len} bytes > max_image_bytes {self.cfg.max_image_bytes}"
        return None

    def _accept(self, stream: str, stamp: float, now: float) -> None:
        self._stamps[stream] = stamp
        self._fresh[stream] = min(stamp, now)  # a stamp a little in the future is as fresh as its arrival

    def _refuse(self, now: float, stream: str, reason: str, detail: str) -> bool:
        self.refused[reason] += 1
        self.log.append(Refusal(now, stream, reason, detail))
        return False

    # ---- hold ------------------------------------------------------------------------------------------------

    def _watched(self) -> list[str]:
        """The streams the watchdog needs fresh: joint state, every camera and, once one has come, the pose."""
        return ["joint_state", *(f"image/{c}" for c in self.cfg.cameras), *(["pose"] if "pose" in self._fresh else [])]

    def watchdog_expiry(self) -> float | None:
        """When (the callers' clock) the watchdog trips if nothing new arrives: the oldest watched input's time +
        ``watchdog_s``; None while an input is missing (it holds already)."""
        times = [self._fresh.get(s) for s in self._watched()]
        return None if None in times else min(times) + self.cfg.watchdog_s

    def _hold_reasons(self, now: float) -> list[str]:
        """Why no command may go out at ``now``, in rule order (empty: commands may flow)."""
        if not is_time(now):
            return [f"clock: now {now!r} is not finite"]
        reasons = ["estop: latched, waiting for reset_estop"] if self.estop_latched else []
        for stream in self._watched():
            t = self._fresh.get(stream)
            if t is None:
                reasons.append(f"watchdog: no {stream} yet")
            elif now - t > self.cfg.watchdog_s:
                reasons.append(f"watchdog: {stream} {now - t:.3f} s old > {self.cfg.watchdog_s}")
        deadman = self.cfg.deadman_s
        if deadman is not None and (self._heartbeat is None or now - self._heartbeat > deadman):
            reasons.append(f"deadman: no heartbeat within {deadman} s")
        return reasons

    def _hold(self, now: float, reasons: list[str]) -> Decision:
        self._forget_sent()
        return self._record(Decision(now, True, None, tuple(reasons)))

    def _forget_sent(self) -> None:
        """After a hold the arm may have moved: the next command is measured from the measured position."""
        self._sent = None

    def _record(self, decision: Decision) -> Decision:
        if decision.hold or decision.changes:
            self.log.append(decision)
        return decision

    # ---- joint clamps ----------------------------------------------------------------------------------------

    def _joint_vector(self, target: Sequence[float] | Mapping[str, float]) -> tuple[float, ...] | None:
        names = self.cfg.joint_names
        if isinstance(target, Mapping):
            if set(target) != set(names):
                return None
            target = [target[j] for j in names]
        return finite_floats(target, len(names))

    def _reference(self, now: float) -> tuple[tuple[float, ...], tuple[float, ...], float]:
        """(positions rad, velocities rad/s, dt s) the next command is bounded from: the last command sent, or
        the measured state clipped into the limits. dt is the time since the last command, at most one period."""
        cfg, period = self.cfg, self.cfg.control_period_s
        if self._sent is not None:
            return self._sent, self._sent_velocity, min(now - self._sent_time, period)
        ref = tuple(clip(q, lo, hi) for q, lo, hi in zip(self._positions, cfg.position_lower, cfg.position_upper,
                                                          strict=True))
        measured = self._velocities or (0.0,) * len(ref)
        vel = tuple(clip(v, -vmax, vmax) for v, vmax in zip(measured, cfg.max_velocity, strict=True))
        return ref, vel, period

    def _joint_intervals(self, i: int, ref: float, v_prev: float, dt: float) -> list[tuple[str, float, float]]:
        """(rule, lo, hi) for joint i, soft (acceleration) first, then the hard ones that all contain ``ref``."""
        cfg = self.cfg
        out = []
        if cfg.max_acceleration is not None:
            dv = cfg.max_acceleration[i] * dt
            out.append(("acceleration", ref + (v_prev - dv) * dt, ref + (v_prev + dv) * dt))
        out.append(("position", cfg.position_lower[i], cfg.position_upper[i]))
        if cfg.steps is not None:
            out.append(("step", ref - cfg.steps[i], ref + cfg.steps[i]))
        reach = cfg.max_velocity[i] * dt
        out.append(("velocity", ref - reach, ref + reach))
        return out

    def _clamp_joints(self, asked: tuple[float, ...], ref: tuple[float, ...], v_prev: tuple[float, ...],
                      dt: float) -> tuple[tuple[float, ...], list[Change]]:
        sent, changes = [], []
        for i, name in enumerate(self.cfg.joint_names):
            x = asked[i]
            for rule, lo, hi in self._joint_intervals(i, ref[i], v_prev[i], dt):
                y = clip(x, lo, hi)
                if y != x:
                    changes.append(Change(rule, name, x, y))
                x = y
            sent.append(x)
        return tuple(sent), changes

    # ---- twist clamps ----------------------------------------------------------------------------------------

    @staticmethod
    def _cap_speed(vec: tuple[float, ...], cap: float, rule: str, names: tuple[str, ...],
                   changes: list[Change]) -> tuple[float, ...]:
        """Scale ``vec`` down to norm ``cap`` (direction kept)."""
        norm = math.hypot(*vec)
        if norm <= cap:
            return vec
        out = tuple(v * (cap / norm) for v in vec)
        changes.extend(Change(rule, n, a, s) for n, a, s in zip(names, vec, out, strict=True) if a != s)
        return out

    def _keep_in_box(self, lin: tuple[float, ...], ee: tuple[float, ...], changes: list[Change]) -> tuple[float, ...]:
        """Cut each linear component so that ee + v * control_period_s stays in the box (per axis)."""
        dt, out = self.cfg.control_period_s, []
        for name, v, p, lo, hi in zip(TWIST_NAMES[:3], lin, ee, self.cfg.workspace_min, self.cfg.workspace_max,
                                      strict=True):
            v_lo, v_hi = min((lo - p) / dt, 0.0), max((hi - p) / dt, 0.0)  # outside: only back towards the box
            w = clip(v, v_lo, v_hi)
            if w != v:
                changes.append(Change("workspace", name, v, w))
            out.append(w)
        return tuple(out)
