"""The rclpy transport's pure parts, without ROS 2: our messages <-> the fields rclpy's message classes hold, the QoS
mapping, and the one-line error where rclpy is missing. ``RclpyTransport`` itself needs a sourced ROS 2 and is not
run here (see robots/ros2/rclpy_transport.py)."""

import array
import dataclasses
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="the ros2 extra is not installed: pip install -e '.[ros2]'")

from robots.ros2 import messages as m  # noqa: E402
from robots.ros2 import rclpy_transport as rt  # noqa: E402
from robots.ros2.transport import RELIABLE, SENSOR_DATA, make_transport  # noqa: E402
from vla_rl.availability import DependencyNotInstalled, is_available  # noqa: E402
from vla_rl.cli import main  # noqa: E402

no_rclpy = pytest.mark.skipif(is_available("rclpy"), reason="rclpy is importable here")


def filled(msg_type: type, rng: np.random.Generator):
    """An instance of ``msg_type`` with every field away from its default (nested messages too)."""
    default = msg_type()
    values = {}
    for name, (kind, sub) in rt.field_kinds(msg_type).items():
        if kind == rt.STRUCT:
            values[name] = filled(sub, rng)
        elif kind == rt.STRUCTS:
            values[name] = [filled(sub, rng) for _ in range(2)]
        elif kind == rt.FLOATS:
            values[name] = rng.normal(size=3).tolist()
        elif kind == rt.FIXED_FLOATS:
            values[name] = rng.normal(size=len(getattr(default, name))).tolist()
        elif kind == rt.BYTES:
            values[name] = rng.integers(0, 256, 60, dtype=np.uint8).tobytes()
        elif kind == rt.STRINGS:
            values[name] = [f"joint{i}" for i in range(3)]
        else:
            values[name] = {"float64": float(rng.normal()), "int": int(rng.integers(1, 200)), "bool": True,
                            "string": f"{name}-{rng.integers(100)}"}[kind]
    return msg_type(**values)


@pytest.mark.parametrize("msg_type", m.MESSAGE_TYPES, ids=lambda t: t.__name__)
def test_every_message_survives_the_round_trip_through_ros_fields(msg_type):
    msg = filled(msg_type, np.random.default_rng(0))
    back = rt.from_ros(msg_type, rt.to_ros_fields(msg))
    assert back == msg
    assert back.serialize() == msg.serialize()  # the same CDR on the wire


def test_fields_take_rclpys_representations():
    """rosidl_generator_py: float64[] an array('d'), uint8[] an array('B'), float64[N] a float64 ndarray; scalars of
    the declared Python type (a ROS setter asserts float for float64, so an int must be converted)."""
    img = m.image_from_rgb(np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3), t=5.5, frame_id="cam")
    f = rt.to_ros_fields(img)
    assert isinstance(f["data"], array.array) and f["data"].typecode == "B" and f["data"].tobytes() == img.data
    assert f["header"] == {"stamp": {"sec": 5, "nanosec": 500_000_000}, "frame_id": "cam"}
    joints = rt.to_ros_fields(m.JointState(name=["a", "b"], position=[0.5, -1.0]))
    assert joints["position"].typecode == "d" and list(joints["position"]) == [0.5, -1.0]
    assert joints["name"] == ["a", "b"]
    k = rt.to_ros_fields(m.CameraInfo())["k"]
    assert isinstance(k, np.ndarray) and k.dtype == np.float64 and k.shape == (9,)
    v = rt.to_ros_fields(m.Vector3(x=1, y=2, z=3))
    assert all(type(x) is float for x in v.values())
    traj = rt.to_ros_fields(m.JointTrajectory(points=[m.JointTrajectoryPoint(positions=[0.04, 0.04])]))
    assert traj["points"][0]["positions"].typecode == "d"
    assert traj["points"][0]["time_from_start"] == {"sec": 0, "nanosec": 0}


def test_to_ros_builds_each_nested_message_with_its_own_class():
    """``to_ros`` with a stand-in class per ROS type (an attribute bag recording its type name); ``from_ros`` reads
    such objects by attribute, as it reads rclpy messages."""
    def resolve(t):
        return lambda **fields: SimpleNamespace(ros_type=m.ros_type_name(t), **fields)

    msg = filled(m.JointTrajectory, np.random.default_rng(1))
    ros = rt.to_ros(msg, resolve)
    assert ros.ros_type == "trajectory_msgs/msg/JointTrajectory"
    assert ros.header.ros_type == "std_msgs/msg/Header"
    assert ros.header.stamp.ros_type == "builtin_interfaces/msg/Time"
    assert [p.ros_type for p in ros.points] == ["trajectory_msgs/msg/JointTrajectoryPoint"] * 2
    assert ros.points[1].time_from_start.ros_type == "builtin_interfaces/msg/Duration"
    assert rt.from_ros(m.JointTrajectory, ros) == msg


def test_a_large_image_converts_in_a_few_milliseconds():
    img = m.image_from_rgb(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    t0 = time.perf_counter()
    back = rt.from_ros(m.Image, rt.to_ros_fields(img))
    dt = time.perf_counter() - t0
    assert back.data == img.data
    assert dt < 0.05, f"{dt * 1e3:.1f} ms for a 480x640 image"  # whole-buffer copies, no per-byte Python


def test_qos_presets_map_to_rclpys_profiles():
    """RELIABLE is rclpy's default profile, SENSOR_DATA its qos_profile_sensor_data (rmw: keep last 5, best effort,
    volatile)."""
    assert rt.ros_qos_fields(RELIABLE) == {"history": "KEEP_LAST", "depth": 10, "reliability": "RELIABLE",
                                        "durability": "VOLATILE"}
    assert rt.ros_qos_fields(SENSOR_DATA) == {"history": "KEEP_LAST", "depth": 5, "reliability": "BEST_EFFORT",
                                           "durability": "VOLATILE"}


def test_unknown_transport_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid: cyclone, rclpy"):
        make_transport("zenoh", 0)


@no_rclpy
def test_missing_rclpy_says_what_to_source():
    with pytest.raises(DependencyNotInstalled, match=r"source /opt/ros/<distro>/setup.bash") as e:
        rt.import_rclpy()
    assert "\n" not in str(e.value)
    with pytest.raises(DependencyNotInstalled, match="rclpy"):
        make_transport("rclpy", 0)
    with pytest.raises(DependencyNotInstalled, match="ros-<distro>-sensor-msgs"):
        rt.ros_message_class(m.Image)


@no_rclpy
@pytest.mark.parametrize("argv", [["deploy", "runs/no-such-checkpoint"], ["record-bag", "--out", "runs/no-bag"],
                                  ["twin", "--task", "mujoco/Reach-v1"]], ids=lambda a: a[0])
def test_cli_transport_rclpy_without_rclpy_exits_2_with_one_line(argv, capsys):
    assert main([*argv, "--transport", "rclpy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"vla-rl {argv[0]}: --transport rclpy needs rclpy"), err
    assert "source /opt/ros/" in err


def test_field_kinds_cover_every_field_of_every_message():
    for t in m.MESSAGE_TYPES:
        assert list(rt.field_kinds(t)) == [f.name for f in dataclasses.fields(t)]
