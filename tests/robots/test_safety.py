"""The safety layer: one test per rule, then properties over arbitrary (often malformed) input sequences."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from robots.safety import Decision, Refusal, SafetyConfig, SafetyLayer

# Franka Panda joint limits (public datasheet): rad and rad/s
JOINTS = [f"panda_joint{i}" for i in range(1, 8)]
LOWER = [-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973]
UPPER = [2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973]
VELOCITY = [2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61]
HOME = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]
PANDA = dict(joint_names=JOINTS, position_lower=LOWER, position_upper=UPPER, max_velocity=VELOCITY,
             workspace_min=(0.2, -0.5, 0.0), workspace_max=(0.8, 0.5, 0.7), max_linear_speed=0.25,
             max_angular_speed=1.0, cameras=["wrist"], image_shape=(224, 224))
T0 = 100.0


def make(**overrides) -> SafetyLayer:
    return SafetyLayer(SafetyConfig(**{**PANDA, **overrides}))


def feed(layer: SafetyLayer, now: float, positions=HOME, age: float = 0.0, velocities=None) -> None:
    """A fresh joint state and wrist image, both stamped ``age`` seconds before ``now``."""
    assert layer.on_joint_state(now - age, JOINTS, positions, velocities, now=now)
    assert layer.on_image("wrist", now - age, 224, 224, "rgb8", 224 * 3, 224 * 224 * 3, now=now)


def ready(**overrides) -> SafetyLayer:
    layer = make(**overrides)
    feed(layer, T0)
    return layer


def moved(joint: int, delta: float, base=HOME) -> list[float]:
    out = list(base)
    out[joint] += delta
    return out


# ---- config ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    dict(position_lower=UPPER, position_upper=LOWER),  # lower >= upper
    dict(max_velocity=VELOCITY[:6]),  # wrong size
    dict(max_velocity=[0.0] * 7),  # not positive
    dict(max_step=[0.05] * 6),
    dict(max_step=-0.1),
    dict(workspace_min=(0.8, -0.5, 0.0), workspace_max=(0.2, 0.5, 0.7)),
    dict(position_upper=[math.nan] * 7),
    dict(joint_names=JOINTS[:6] + [JOINTS[0]]),  # duplicate name
    dict(watchdog=0.1),  # unknown key
])
def test_config_refuses_inconsistent_limits(bad):
    with pytest.raises(ValidationError):
        SafetyConfig(**{**PANDA, **bad})


def test_a_wrong_config_type_is_a_programming_error():
    with pytest.raises(TypeError):
        SafetyLayer(PANDA)


# ---- joint clamps ----------------------------------------------------------------------------------------------


def test_position_limit_sends_the_limit_and_names_the_joint():
    layer = make()
    feed(layer, T0, positions=moved(0, UPPER[0] - 0.01))
    d = layer.filter_joint_target(moved(0, UPPER[0] + 0.5), T0 + 0.01)
    assert not d.hold and d.command[0] == UPPER[0]
    assert d.clamped == {"panda_joint1": (UPPER[0] + 0.5, UPPER[0])}
    assert [c.rule for c in d.changes] == ["position"]
    assert d.command[1:] == tuple(HOME[1:])


def test_per_step_clamp_turns_a_jump_into_max_step_from_the_last_command_sent():
    layer = ready(max_step=0.05, control_period_s=1.0)  # a long period: velocity does not bind
    d = layer.filter_joint_target(moved(0, 0.3), T0 + 0.01)
    assert d.command[0] == pytest.approx(0.05) and d.clamped["panda_joint1"] == (0.3, pytest.approx(0.05))
    assert [c.rule for c in d.changes] == ["step"]
    feed(layer, T0 + 0.09)  # the arm has not moved yet: the next step is still from the command sent
    d = layer.filter_joint_target(moved(0, 0.3), T0 + 0.1)
    assert d.reference[0] == pytest.approx(0.05) and d.command[0] == pytest.approx(0.10)


def test_velocity_limit_over_dt_capped_at_the_control_period():
    layer = ready(control_period_s=0.02)
    d = layer.filter_joint_target(moved(0, 0.3), T0 + 0.01)  # first command: dt = one period
    assert d.dt == 0.02 and d.command[0] == pytest.approx(2.175 * 0.02)
    assert [c.rule for c in d.changes] == ["velocity"]
    d = layer.filter_joint_target(moved(0, 0.3), T0 + 0.02)  # 0.01 s later: half the reach
    assert d.dt == pytest.approx(0.01) and d.command[0] == pytest.approx(2.175 * 0.03)
    feed(layer, T0 + 0.5)
    d = layer.filter_joint_target(moved(0, 0.3), T0 + 0.5)  # 0.48 s later: still one period, not 0.48 s worth
    assert d.dt == 0.02 and d.command[0] == pytest.approx(2.175 * 0.05)


def test_acceleration_limit_ramps_the_velocity_up():
    layer = ready(max_acceleration=[10.0] * 7, control_period_s=0.02)  # from rest: +0.2 rad/s per period
    first = layer.filter_joint_target(moved(0, 0.3), T0 + 0.02)
    second = layer.filter_joint_target(moved(0, 0.3), T0 + 0.04)
    assert first.command[0] == pytest.approx(0.2 * 0.02)
    assert second.command[0] - first.command[0] == pytest.approx(0.4 * 0.02)
    assert [c.rule for c in first.changes] == ["acceleration"]


def test_hard_limits_win_over_acceleration():
    """A joint at full speed 1 mrad below its limit cannot stop within a_max: the position limit wins."""
    layer = make(max_acceleration=[10.0] * 7)
    feed(layer, T0, positions=moved(0, UPPER[0] - 0.001), velocities=moved(0, 2.175, [0.0] * 7))
    d = layer.filter_joint_target(moved(0, UPPER[0] + 1.0), T0 + 0.01)
    assert d.command[0] == UPPER[0]
    assert [c.rule for c in d.changes] == ["acceleration", "position"]


def test_after_a_hold_the_next_command_is_bounded_from_the_measured_position():
    layer = ready(max_step=0.05, control_period_s=1.0)
    assert layer.filter_joint_target(moved(0, 0.3), T0 + 0.01).command[0] == pytest.approx(0.05)
    assert layer.filter_joint_target(moved(0, 0.3), T0 + 0.2).hold  # watchdog
    feed(layer, T0 + 0.3, positions=moved(0, -0.5))  # the arm is elsewhere now
    d = layer.filter_joint_target(moved(0, 0.3), T0 + 0.31)
    assert d.reference[0] == -0.5 and d.command[0] == pytest.approx(-0.45)


def test_a_measured_position_just_outside_the_limits_is_clipped_into_them_as_the_reference():
    layer = make(max_step=0.05)
    feed(layer, T0, positions=moved(3, UPPER[3] + 0.05 - HOME[3]))  # joint 4 at 0.05 rad past its upper limit
    d = layer.filter_joint_target(moved(3, 0.0), T0 + 0.01)
    assert d.reference[3] == UPPER[3] and LOWER[3] <= d.command[3] <= UPPER[3]


def test_a_mapping_target_is_reordered_by_name():
    layer = ready()
    target = dict(zip(reversed(JOINTS), reversed(moved(2, 0.01)), strict=True))
    d = layer.filter_joint_target(target, T0 + 0.01)
    assert d.command == pytest.approx(moved(2, 0.01)) and not d.changes


@pytest.mark.parametrize("target", [
    moved(0, math.nan), moved(0, math.inf), HOME[:6], HOME + [0.0], "0123456", None, {"panda_joint1": 0.0},
    [str(q) + "x" for q in HOME],
])
def test_a_malformed_target_holds(target):
    d = ready().filter_joint_target(target, T0 + 0.01)
    assert d.hold and d.command is None and d.reasons[0].startswith("malformed")


def test_a_second_command_at_the_same_time_holds():
    layer = ready()
    assert not layer.filter_joint_target(HOME, T0 + 0.01).hold
    d = layer.filter_joint_target(HOME, T0 + 0.01)
    assert d.hold and d.reasons[0].startswith("clock")


# ---- e-stop, watchdog, deadman ---------------------------------------------------------------------------------


def test_estop_latches_until_an_explicit_reset():
    layer = ready()
    assert not layer.filter_joint_target(HOME, T0 + 0.01).hold
    layer.on_estop(True, T0 + 0.02)
    assert layer.filter_joint_target(HOME, T0 + 0.03).reasons == ("estop: latched, waiting for reset_estop",)
    assert not layer.reset_estop(T0 + 0.035)  # still pressed: the reset is refused
    assert layer.refused["estop_pressed"] == 1
    layer.on_estop(False, T0 + 0.04)  # released: still latched
    assert layer.filter_joint_target(HOME, T0 + 0.05).hold
    assert layer.reset_estop(T0 + 0.06)
    assert not layer.filter_joint_target(HOME, T0 + 0.07).hold


@pytest.mark.parametrize("message", [None, math.nan, "false", 1, 2.5])
def test_an_estop_message_that_is_not_a_plain_false_latches(message):
    layer = ready()
    layer.on_estop(message, T0)
    assert layer.estop_latched and layer.filter_joint_target(HOME, T0 + 0.01).hold


def test_watchdog_holds_on_a_joint_state_older_than_watchdog_s():
    layer = make()
    feed(layer, T0, age=0.15)  # accepted (not stale at 0.5 s) but not fresh
    d = layer.filter_joint_target(HOME, T0)
    assert d.hold and d.reasons[0].startswith("watchdog: joint_state 0.150 s old")


@pytest.mark.parametrize("late, holds", [(0.099, False), (0.101, True)])
def test_watchdog_boundary_measured_from_the_last_fresh_input(late, holds):
    layer = ready()
    assert layer.filter_joint_target(HOME, T0 + late).hold is holds


def test_watchdog_requires_every_camera():
    layer = make(cameras=["wrist", "scene"])
    feed(layer, T0)
    d = layer.filter_joint_target(HOME, T0 + 0.01)
    assert d.hold and d.reasons == ("watchdog: no image/scene yet",)
    layer = ready()
    assert layer.on_joint_state(T0 + 0.08, JOINTS, HOME, now=T0 + 0.08)  # only the joints keep coming
    d = layer.filter_joint_target(HOME, T0 + 0.12)
    assert d.hold and d.reasons[0].startswith("watchdog: image/wrist")


def test_a_stamp_slightly_in_the_future_is_only_as_fresh_as_its_arrival():
    layer = make()
    feed(layer, T0, age=-0.04)  # within max_clock_skew_s
    assert not layer.filter_joint_target(HOME, T0 + 0.1).hold
    assert layer.filter_joint_target(HOME, T0 + 0.11).hold


def test_deadman_needs_a_recent_heartbeat():
    layer = ready(deadman_s=0.5)
    assert layer.filter_joint_target(HOME, T0 + 0.01).reasons == ("deadman: no heartbeat within 0.5 s",)
    layer.on_heartbeat(T0)
    feed(layer, T0 + 0.4)
    assert not layer.filter_joint_target(HOME, T0 + 0.4).hold
    feed(layer, T0 + 0.6)
    assert layer.filter_joint_target(HOME, T0 + 0.6).hold
    layer.on_heartbeat(T0 + 0.6)
    assert not layer.filter_joint_target(HOME, T0 + 0.61).hold
    layer.on_heartbeat(T0 + 0.62, alive=False)  # switch let go: hold at once
    assert layer.filter_joint_target(HOME, T0 + 0.63).hold


# ---- input refusals --------------------------------------------------------------------------------------------


def test_stale_future_and_out_of_order_stamps_are_refused_and_counted():
    layer = ready(max_step=0.05)
    assert not layer.on_joint_state(T0 - 0.6, JOINTS, moved(0, 0.2), now=T0 + 0.01)  # 0.61 s old > 0.5
    assert not layer.on_joint_state(T0 + 0.2, JOINTS, moved(0, 0.2), now=T0 + 0.01)  # from the future
    assert layer.on_joint_state(T0 + 0.01, JOINTS, HOME, now=T0 + 0.01)
    assert not layer.on_joint_state(T0 + 0.005, JOINTS, moved(0, 0.2), now=T0 + 0.02)  # older than the last
    assert not layer.on_joint_state(T0 + 0.01, JOINTS, moved(0, 0.2), now=T0 + 0.02)  # the same stamp again
    assert not layer.on_image("wrist", T0 - 0.01, 224, 224, "rgb8", 672, 224 * 672, now=T0 + 0.02)
    assert layer.refused == {"stale": 1, "future": 1, "out_of_order": 3}
    assert [e.reason for e in layer.log if isinstance(e, Refusal)] == ["stale", "future"] + ["out_of_order"] * 3
    assert layer.filter_joint_target(HOME, T0 + 0.03).reference == tuple(HOME)  # none of them was used


@pytest.mark.parametrize("names, reason", [
    (JOINTS[:6], "names"),  # a joint missing
    (JOINTS[:6] + ["panda_joint9"], "names"),  # an unknown joint
    (JOINTS + ["panda_finger_joint1"], "names"),  # an extra joint not declared ignorable
    (JOINTS[:6] + [JOINTS[0]], "names"),  # a duplicate
    ("panda_joint1", "names"),
    ([1, 2, 3, 4, 5, 6, 7], "names"),
])
def test_wrong_joint_names_are_refused(names, reason):
    layer = make()
    assert not layer.on_joint_state(T0, names, list(range(len(names))), now=T0)
    assert layer.refused == {reason: 1}


def test_joint_names_in_another_order_are_reordered_and_ignored_joints_skipped():
    layer = make(ignored_joints=["panda_finger_joint1"])
    names = ["panda_finger_joint1", *reversed(JOINTS)]
    assert layer.on_joint_state(T0, names, [0.04, *reversed(moved(1, 0.1))], now=T0)
    assert layer.on_image("wrist", T0, 224, 224, "rgb8", 672, 224 * 672, now=T0)
    assert layer.filter_joint_target(HOME, T0 + 0.01).reference == pytest.approx(moved(1, 0.1))


@pytest.mark.parametrize("positions, velocities, reason", [
    (moved(0, math.nan), None, "values"),
    (moved(0, -math.inf), None, "values"),
    (HOME[:6], None, "values"),
    (HOME, [0.0] * 6, "values"),
    (HOME, moved(2, math.nan, [0.0] * 7), "values"),
    (moved(0, 1e300), None, "range"),
    (moved(0, UPPER[0] + 0.11), None, "range"),  # more than state_margin (0.1) past the limit
])
def test_bad_joint_values_are_refused(positions, velocities, reason):
    layer = make()
    assert not layer.on_joint_state(T0, JOINTS, positions, velocities, now=T0)
    assert layer.refused == {reason: 1}


@pytest.mark.parametrize("camera, h, w, encoding, step, data_len, reason", [
    ("scene", 224, 224, "rgb8", 672, 224 * 672, "camera"),
    ("wrist", 480, 640, "rgb8", 1920, 480 * 1920, "image"),  # not the expected shape
    ("wrist", 224, 224, "yuv422", 448, 224 * 448, "image"),
    ("wrist", 224, 224, "rgb8", 672, 100, "image"),  # data length does not match
    ("wrist", 224, 224, "rgb8", 224, 224 * 224, "image"),  # step too short for rgb8
    ("wrist", 224, -224, "rgb8", 672, 224 * 672, "image"),
    ("wrist", 224.0, 224, "rgb8", 672, 224 * 672, "image"),
])
def test_bad_images_are_refused(camera, h, w, encoding, step, data_len, reason):
    layer = make()
    assert not layer.on_image(camera, T0, h, w, encoding, step, data_len, now=T0)
    assert layer.refused == {reason: 1}


def test_an_image_over_max_image_bytes_is_refused():
    layer = make(image_shape=None, max_image_bytes=1000)
    assert not layer.on_image("wrist", T0, 20, 20, "rgb8", 60, 1200, now=T0)
    assert layer.on_image("wrist", T0, 10, 10, "rgb8", 30, 300, now=T0)


# ---- twist -----------------------------------------------------------------------------------------------------


def test_twist_leaving_the_workspace_is_cut_at_the_boundary():
    layer = ready(control_period_s=0.1)
    d = layer.filter_twist((0.2, 0.0, -0.1), (0.0, 0.0, 0.0), T0 + 0.01, ee_position=(0.79, 0.0, 0.3))
    assert d.command[:3] == pytest.approx((0.1, 0.0, -0.1))  # 0.79 + 0.1 * 0.1 = 0.8, the box's edge
    assert d.clamped == {"linear.x": (0.2, pytest.approx(0.1))} and d.changes[0].rule == "workspace"


def test_twist_outside_the_workspace_may_only_move_back():
    layer = ready()
    out = layer.filter_twist((0.1, 0.0, 0.0), (0.0, 0.0, 0.0), T0 + 0.01, ee_position=(0.85, 0.0, 0.3))
    back = layer.filter_twist((-0.1, 0.0, 0.0), (0.0, 0.0, 0.0), T0 + 0.02, ee_position=(0.85, 0.0, 0.3))
    assert out.command[0] == 0.0 and back.command[0] == -0.1


def test_twist_speed_caps_scale_the_vector():
    layer = ready()
    d = layer.filter_twist((0.3, 0.4, 0.0), (0.0, 0.0, 2.0), T0 + 0.01, ee_position=(0.5, 0.0, 0.3))
    assert d.command == pytest.approx((0.15, 0.2, 0.0, 0.0, 0.0, 1.0))
    assert {c.rule for c in d.changes} == {"linear_speed", "angular_speed"}


def test_twist_holds_like_joint_commands():
    layer = ready()
    assert layer.filter_twist((0.0, 0.0, math.nan), (0.0,) * 3, T0 + 0.01, (0.5, 0.0, 0.3)).hold
    assert layer.filter_twist((0.0,) * 3, (0.0,) * 3, T0 + 0.01, (0.5, 0.0)).hold
    layer.on_estop(True, T0 + 0.02)
    assert layer.filter_twist((0.0,) * 3, (0.0,) * 3, T0 + 0.03, (0.5, 0.0, 0.3)).hold


# ---- the log ---------------------------------------------------------------------------------------------------


def test_the_log_keeps_what_was_changed_or_held_and_is_bounded():
    layer = ready(log_size=3)
    layer.filter_joint_target(HOME, T0 + 0.01)  # unchanged: not logged
    assert not layer.log
    layer.filter_joint_target(moved(0, 1.0), T0 + 0.03)
    assert "clamped: velocity panda_joint1 1->0.0435" in layer.log[-1].describe()
    layer.filter_joint_target(HOME, T0 + 0.5)
    assert layer.log[-1].describe().startswith("t=100.500 HOLD: watchdog")
    for i in range(5):
        layer.on_joint_state(T0, JOINTS, HOME, now=T0 + 0.5 + i)
    assert len(layer.log) == 3


# ---- properties ------------------------------------------------------------------------------------------------


# two configs: per-step and velocity bounds that bind on different joints (no acceleration limit), and an
# acceleration limit that binds first (where the others would rarely be reached)
CONFIGS = {
    "step+velocity": SafetyConfig(**{**PANDA, "max_step": [0.05, 0.2] * 3 + [0.05], "control_period_s": 0.05,
                                     "deadman_s": 0.3}),
    "acceleration": SafetyConfig(**{**PANDA, "max_step": 0.1, "max_acceleration": [15.0] * 7, "deadman_s": 0.3}),
}
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
JOINT_VALUE = st.one_of(st.floats(-3.2, 3.8), ANY_FLOAT, st.sampled_from([1e308, -1e308, math.nan]))
VECTOR = st.one_of(st.lists(JOINT_VALUE, min_size=7, max_size=7), st.lists(JOINT_VALUE, max_size=9))
# a position anywhere in the joint ranges, at times a little outside (past state_margin: refused)
POSITION = st.lists(st.floats(-0.03, 1.03), min_size=7, max_size=7).map(
    lambda fs: [lo + f * (hi - lo) for f, lo, hi in zip(fs, LOWER, UPPER, strict=True)])
NAMES = st.one_of(st.just(JOINTS), st.permutations(JOINTS), st.lists(st.sampled_from(JOINTS + ["x"]), max_size=8))
STAMP = st.one_of(st.sampled_from([0.0, -0.01, -0.2, -1.0, 0.3]), st.floats(-0.7, 0.1), ANY_FLOAT)
SMALL = st.lists(st.one_of(st.floats(-1.0, 1.0), ANY_FLOAT), min_size=2, max_size=4)
BOX = st.tuples(st.floats(0.2, 0.8), st.floats(-0.5, 0.5), st.floats(0.0, 0.7))
PLAUSIBLE_TARGET = st.tuples(st.just("joint"), POSITION)
PLAUSIBLE_TWIST = st.tuples(st.just("twist"), st.tuples(*[st.floats(-1, 1)] * 3), st.tuples(*[st.floats(-3, 3)] * 3),
                            BOX)
OPS = st.one_of(  # one_of draws its branches evenly: plausible commands are repeated to be common
    PLAUSIBLE_TARGET, PLAUSIBLE_TARGET, PLAUSIBLE_TARGET, PLAUSIBLE_TWIST,
    st.tuples(st.just("joint"), VECTOR),  # anything
    st.tuples(st.just("twist"), SMALL, SMALL, SMALL),
    st.tuples(st.just("state"), STAMP, NAMES, VECTOR, st.one_of(st.none(), VECTOR)),
    st.tuples(st.just("image"), STAMP, st.sampled_from([(224, 672, 224 * 672), (224, 672, 5), (100, 300, 30000)])),
    st.tuples(st.just("estop"), st.one_of(st.booleans(), st.none(), ANY_FLOAT)),
    st.tuples(st.just("reset"), st.booleans()),  # True: an e-stop release message first
    st.tuples(st.just("heartbeat"), st.booleans()),
)
# each step: time advance (s), whether a good joint state (at `measured`), image and heartbeat arrive first (so
# that commands can flow), then one operation
STEPS = st.lists(st.tuples(st.sampled_from([0.0, 0.001, 0.01, 0.02, 0.05, 0.2]), st.booleans(), POSITION, OPS),
                 min_size=5, max_size=40)
EPS = 1e-9


def check_joint(cfg: SafetyConfig, d: Decision, prev_sent):
    """A command sent is finite, within the limits, and within step and velocity reach of its reference, which
    is the previous command sent when there was no hold in between."""
    assert d.command is not None and len(d.command) == 7 and all(math.isfinite(q) for q in d.command)
    assert 0 < d.dt <= cfg.control_period_s
    if prev_sent is not None:
        assert d.reference == prev_sent
    for q, r, lo, hi, v, step in zip(d.command, d.reference, LOWER, UPPER, VELOCITY, cfg.steps, strict=True):
        assert lo <= q <= hi and lo <= r <= hi
        assert abs(q - r) <= step + EPS and abs(q - r) <= v * d.dt + EPS


def check_twist(cfg: SafetyConfig, d: Decision, ee):
    lin, ang = d.command[:3], d.command[3:]
    assert all(math.isfinite(v) for v in d.command)
    assert math.hypot(*lin) <= cfg.max_linear_speed + EPS and math.hypot(*ang) <= cfg.max_angular_speed + EPS
    for v, p, lo, hi in zip(lin, ee, cfg.workspace_min, cfg.workspace_max, strict=True):
        if lo <= p <= hi:
            assert lo - EPS <= p + v * cfg.control_period_s <= hi + EPS


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_no_input_sequence_crashes_or_sends_a_command_outside_the_limits(cfg, steps):
    layer, now = SafetyLayer(cfg), T0
    latched, asserted, prev_sent = False, False, None  # our own model of the e-stop, not the layer's
    for advance, fresh, measured, (kind, *args) in steps:
        now += advance
        if fresh:
            layer.on_joint_state(now, JOINTS, measured, now=now)
            layer.on_image("wrist", now, 224, 224, "rgb8", 672, 224 * 672, now=now)
            layer.on_heartbeat(now)
        if kind == "state":
            stamp, names, positions, velocities = args
            layer.on_joint_state(now + stamp, names, positions, velocities, now=now)
        elif kind == "image":
            stamp, (h, step, n) = args
            layer.on_image("wrist", now + stamp, h, 224, "rgb8", step, n, now=now)
        elif kind == "estop":
            asserted = not (isinstance(args[0], bool) and not args[0])
            latched = latched or asserted
            prev_sent = None if asserted else prev_sent
            layer.on_estop(args[0], now)
        elif kind == "reset":
            if args[0]:
                layer.on_estop(False, now)
                asserted = False
            assert layer.reset_estop(now) is not asserted
            latched = latched and asserted
        elif kind == "heartbeat":
            layer.on_heartbeat(now, alive=args[0])
        elif kind == "joint":
            d = layer.filter_joint_target(args[0], now)
            assert d.hold or not latched
            if not d.hold:
                check_joint(cfg, d, prev_sent)
            prev_sent = d.command
        else:
            lin, ang, ee = args
            d = layer.filter_twist(lin, ang, now, ee)
            assert d.hold or not latched
            if d.hold:
                prev_sent = None
            else:
                check_twist(cfg, d, ee)


@pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
@settings(max_examples=100, deadline=2000)
@given(start=POSITION, steps=st.lists(st.tuples(st.sampled_from([0.001, 0.01, 0.02, 0.05]),
                                                st.one_of(POSITION, VECTOR)), min_size=1, max_size=60))
def test_while_inputs_are_fresh_each_command_sent_stays_within_reach_of_the_previous_one(cfg, start, steps):
    """Fresh inputs at every step (the arm measured at `start`), arbitrary targets (huge, NaN, wrong sizes): a
    well-formed target is always sent, bounded from the previous command sent; a malformed one holds, and the
    next is bounded from the measured position again."""
    layer, now, prev_sent = SafetyLayer(cfg), T0, None
    for advance, target in steps:
        now += advance
        layer.on_joint_state(now, JOINTS, start, now=now)
        layer.on_image("wrist", now, 224, 224, "rgb8", 672, 224 * 672, now=now)
        layer.on_heartbeat(now)
        d = layer.filter_joint_target(target, now)
        well_formed = len(target) == 7 and all(math.isfinite(q) for q in target)
        if layer.refused["range"]:  # `start` more than state_margin outside the limits: no fresh state
            assert d.hold
            continue
        assert d.hold is not well_formed
        if well_formed:
            check_joint(cfg, d, prev_sent)
            if prev_sent is None:
                clipped = [min(max(q, lo), hi) for q, lo, hi in zip(start, LOWER, UPPER, strict=True)]
                assert d.reference == pytest.approx(clipped)
        prev_sent = d.command


def test_a_non_finite_gripper_holds_a_joint_target_too():
    layer = ready()
    for g in (float("nan"), float("inf")):
        d = layer.filter_joint_target(HOME, T0 + 0.01, gripper=g)
        assert d.hold and d.command is None and any("gripper" in r for r in d.reasons), d
    assert not layer.filter_joint_target(HOME, T0 + 0.02, gripper=0.04).hold
