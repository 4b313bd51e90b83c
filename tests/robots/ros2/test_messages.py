"""Wire compatibility without a ROS install: the CDR our message classes serialise equals what rosbags' ROS 2
typestores (Humble and Jazzy) serialise for the same content, and rosbags reads our bytes back to the same values."""

import dataclasses
import math

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="the ros2 extra is not installed: pip install -e '.[ros2]'")
typesys = pytest.importorskip("rosbags.typesys", reason="the ros2 extra is not installed: pip install -e '.[ros2]'")

from rosbags.interfaces import Nodetype  # noqa: E402

from robots.ros2 import messages as m  # noqa: E402

STORES = {"humble": typesys.Stores.ROS2_HUMBLE, "jazzy": typesys.Stores.ROS2_JAZZY}


def _header(frame="base_link"):
    return m.Header(stamp=m.Time(sec=-7, nanosec=999_999_999), frame_id=frame)


def _point(i):
    return m.JointTrajectoryPoint(positions=[0.1 * i, -1.5, 3.25], velocities=[1e-9, 2.0], accelerations=[],
                                  effort=[-4.5], time_from_start=m.Duration(sec=i, nanosec=250_000_000))


# One populated instance per type: odd-length strings (alignment after them), negative and large integers, empty and
# non-empty sequences, fixed arrays, nested structs, a sequence of structs, non-ASCII text.
SAMPLES = {
    m.Time: m.Time(sec=-2_000_000_000, nanosec=4_000_000_000),
    m.Duration: m.Duration(sec=12, nanosec=345),
    m.Header: _header("cam"),
    m.Bool: m.Bool(data=True),
    m.String: m.String(data="pick the red cube → bowl"),
    m.Image: m.Image(header=_header("wrist_cam"), height=2, width=3, encoding="rgb8", is_bigendian=0, step=9,
                     data=bytes(range(200, 218))),
    m.RegionOfInterest: m.RegionOfInterest(x_offset=1, y_offset=2, height=3, width=4, do_rectify=True),
    m.CameraInfo: m.CameraInfo(header=_header("c"), height=480, width=640, distortion_model="plumb_bob",
                               d=[0.1, -0.2, 1e-3, -1e-4, 0.0], k=[float(i) + 0.5 for i in range(9)],
                               r=[1.0, 0, 0, 0, 1, 0, 0, 0, 1.0], p=[-float(i) for i in range(12)], binning_x=2,
                               binning_y=4, roi=m.RegionOfInterest(5, 6, 7, 8, True)),
    m.JointState: m.JointState(header=_header("x"), name=["joint1", "joint_22", "j3"], position=[0.0, -math.pi, 1e300],
                               velocity=[0.5, 0.25, -0.125], effort=[]),
    m.Vector3: m.Vector3(x=1.0, y=-2.5, z=3e-12),
    m.Twist: m.Twist(linear=m.Vector3(0.1, 0.2, 0.3), angular=m.Vector3(-1, -2, -3)),
    m.TwistStamped: m.TwistStamped(header=_header("tool0"), twist=m.Twist(m.Vector3(1, 2, 3), m.Vector3(4, 5, 6))),
    m.Point: m.Point(x=-0.5, y=0.25, z=1e9),
    m.Quaternion: m.Quaternion(x=0.0, y=0.7071067811865476, z=0.0, w=0.7071067811865476),
    m.Pose: m.Pose(position=m.Point(1, 2, 3), orientation=m.Quaternion(0.5, 0.5, 0.5, 0.5)),
    m.PoseStamped: m.PoseStamped(header=_header("world"), pose=m.Pose(m.Point(-1, 0, 1), m.Quaternion())),
    m.JointTrajectoryPoint: _point(3),
    m.JointTrajectory: m.JointTrajectory(header=_header("arm"), joint_names=["a", "bb", "ccc"],
                                         points=[_point(1), _point(2)]),
}


def test_every_message_type_has_a_sample():
    assert set(SAMPLES) == set(m.MESSAGE_TYPES)


def _to_rosbags(value, fielddef, store):
    """Our value -> rosbags' value for the field definition ``fielddef`` (rosbags' own ``(Nodetype, spec)``)."""
    kind, spec = fielddef
    if kind == Nodetype.NAME:
        return _build(value, spec, store)
    if kind == Nodetype.BASE:
        return value
    (sub_kind, sub_spec), _ = spec  # ARRAY / SEQUENCE of sub
    if sub_kind == Nodetype.BASE and sub_spec[0] != "string":
        dtype = {"float64": np.float64, "uint8": np.uint8}[sub_spec[0]]
        return np.frombuffer(value, dtype) if isinstance(value, bytes) else np.asarray(value, dtype)
    return [_to_rosbags(v, (sub_kind, sub_spec), store) for v in value]


def _build(ours, rosname, store):
    """Our instance -> the rosbags instance of ``rosname``, field by field in rosbags' order and with its names."""
    _, fields = store.fielddefs[rosname]
    return store.types[rosname](**{name: _to_rosbags(getattr(ours, name), fd, store) for name, fd in fields})


def _plain(x):
    """Compare-friendly form of either side: dataclasses -> dicts, arrays and bytes -> lists."""
    if dataclasses.is_dataclass(x):
        return {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x) if not f.name.startswith("__")}
    if isinstance(x, np.ndarray | bytes):
        return list(x.tolist() if isinstance(x, np.ndarray) else x)
    if isinstance(x, list):
        return [_plain(v) for v in x]
    return x


@pytest.fixture(scope="module", params=list(STORES))
def store(request):
    return typesys.get_typestore(STORES[request.param])


@pytest.mark.parametrize("msg_type", m.MESSAGE_TYPES, ids=lambda t: t.__name__)
def test_field_names_and_order_match_the_ros_definition(msg_type, store):
    _, fields = store.fielddefs[m.ros_type_name(msg_type)]
    assert [f.name for f in dataclasses.fields(msg_type)] == [name for name, _ in fields]


@pytest.mark.parametrize("msg_type", m.MESSAGE_TYPES, ids=lambda t: t.__name__)
def test_cdr_bytes_equal_rosbags(msg_type, store):
    ours = SAMPLES[msg_type]
    rosname = m.ros_type_name(msg_type)
    theirs = store.serialize_cdr(_build(ours, rosname, store), rosname)
    wire = ours.serialize()
    assert wire[:4] == b"\x00\x01\x00\x00"  # encapsulation: CDR_LE (XCDR1), options 0, as rmw_cyclonedds sends
    assert bytes(theirs) == wire


@pytest.mark.parametrize("msg_type", m.MESSAGE_TYPES, ids=lambda t: t.__name__)
def test_rosbags_reads_our_bytes_and_we_read_theirs(msg_type, store):
    ours = SAMPLES[msg_type]
    rosname = m.ros_type_name(msg_type)
    assert _plain(store.deserialize_cdr(ours.serialize(), rosname)) == _plain(ours)
    theirs = store.serialize_cdr(_build(ours, rosname, store), rosname)
    assert msg_type.deserialize(bytes(theirs)) == ours


def test_type_names():
    assert m.dds_type_name(m.JointState) == "sensor_msgs::msg::dds_::JointState_"
    assert m.ros_type_name(m.JointTrajectoryPoint) == "trajectory_msgs/msg/JointTrajectoryPoint"


@pytest.mark.parametrize("t", [0.0, 1.5, 1700000000.123456789, 2.9999999999, -0.25])
def test_stamp_round_trip(t):
    s = m.stamp(t)
    assert 0 <= s.nanosec < 1_000_000_000
    assert m.to_seconds(s) == pytest.approx(t, abs=1e-6)


def test_image_round_trip_and_padded_step():
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    msg = m.image_from_rgb(rgb, t=3.5, frame_id="cam")
    assert (msg.height, msg.width, msg.step, msg.encoding, len(msg.data)) == (4, 5, 15, "rgb8", 60)
    np.testing.assert_array_equal(m.rgb_from_image(m.Image.deserialize(msg.serialize())), rgb)
    padded = np.zeros((4, 16), np.uint8)
    padded[:, :15] = rgb.reshape(4, 15)
    msg.step, msg.data = 16, padded.tobytes()
    np.testing.assert_array_equal(m.rgb_from_image(msg), rgb)
    with pytest.raises(ValueError, match="uint8"):
        m.image_from_rgb(rgb.astype(np.float32))
