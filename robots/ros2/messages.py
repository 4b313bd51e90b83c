"""The ROS 2 messages the bridge speaks, defined once as Cyclone DDS IDL structs.

Each class carries the DDS type name ROS 2 gives it (``sensor_msgs::msg::dds_::Image_``) and its fields in the order
and with the types of the ``.msg`` definition (Humble and Jazzy agree for all of these), so ``msg.serialize()`` is the
CDR a ROS 2 node puts on the wire: little-endian plain CDR (XCDR1), encapsulation header ``00 01 00 00``.
``tests/robots/ros2/test_messages.py`` checks every type byte for byte against rosbags' Humble and Jazzy typestores.

Field types: ``float64[]`` and ``string[]`` are Python lists; ``uint8[]`` (``Image.data``) is declared
``sequence[uint8]`` (so discovery announces the right type) but carried as ``bytes`` (see ``_carry_as_bytes``).
"""

# No `from __future__ import annotations`: cyclonedds reads the field annotations as live types.
import math
from dataclasses import dataclass, field

import numpy as np

from vla_rl.availability import require

require("cyclonedds")  # a missing extra raises with the line to run: pip install -e ".[ros2]"

from cyclonedds.idl import IdlStruct  # noqa: E402
from cyclonedds.idl._machinery import BytesMachine, PlainCdrV2SequenceOfPrimitiveMachine  # noqa: E402
from cyclonedds.idl.types import array, float64, int32, sequence, uint8, uint32  # noqa: E402


def _zeros(n: int):
    return field(default_factory=lambda: [0.0] * n)


# ---- builtin_interfaces ------------------------------------------------------------------------------------------


@dataclass
class Time(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Duration(IdlStruct, typename="builtin_interfaces::msg::dds_::Duration_"):
    sec: int32 = 0
    nanosec: uint32 = 0


# ---- std_msgs ----------------------------------------------------------------------------------------------------


@dataclass
class Header(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class Bool(IdlStruct, typename="std_msgs::msg::dds_::Bool_"):
    data: bool = False


@dataclass
class String(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str = ""


# ---- sensor_msgs -------------------------------------------------------------------------------------------------


@dataclass
class Image(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header = field(default_factory=Header)
    height: uint32 = 0
    width: uint32 = 0
    encoding: str = ""
    is_bigendian: uint8 = 0
    step: uint32 = 0  # bytes per row
    data: sequence[uint8] = b""  # height * step bytes, carried as bytes (see _carry_as_bytes)


def _carry_as_bytes(msg_type: type[IdlStruct], name: str) -> None:
    """Serialise the ``sequence[uint8]`` field ``name`` from and to ``bytes`` rather than a list of ints.

    cyclonedds 11.0.1 packs a uint8 sequence one Python int per byte (41 ms for a 480x640 RGB image; the receiver
    gets a 921,600-element list) and cannot describe a ``bytes`` field to discovery. Its own ``bytes`` codec writes
    the same CDR (a uint32 length, then the bytes), so we keep the declared type and swap in that codec for this one
    field. This reaches into cyclonedds internals (pinned in pyproject.toml); the wire tests would catch a change.
    """
    idl = msg_type.__idl__
    idl.populate()
    for struct_machine in (idl.v1_machine, idl.v2_machine):
        assert isinstance(struct_machine.members_machines[name], PlainCdrV2SequenceOfPrimitiveMachine)
        struct_machine.members_machines[name] = BytesMachine()


_carry_as_bytes(Image, "data")


@dataclass
class RegionOfInterest(IdlStruct, typename="sensor_msgs::msg::dds_::RegionOfInterest_"):
    x_offset: uint32 = 0
    y_offset: uint32 = 0
    height: uint32 = 0
    width: uint32 = 0
    do_rectify: bool = False


@dataclass
class CameraInfo(IdlStruct, typename="sensor_msgs::msg::dds_::CameraInfo_"):
    header: Header = field(default_factory=Header)
    height: uint32 = 0
    width: uint32 = 0
    distortion_model: str = ""
    d: sequence[float64] = field(default_factory=list)
    k: array[float64, 9] = _zeros(9)  # 3x3 intrinsics, row-major
    r: array[float64, 9] = _zeros(9)  # 3x3 rectification
    p: array[float64, 12] = _zeros(12)  # 3x4 projection
    binning_x: uint32 = 0
    binning_y: uint32 = 0
    roi: RegionOfInterest = field(default_factory=RegionOfInterest)


@dataclass
class JointState(IdlStruct, typename="sensor_msgs::msg::dds_::JointState_"):
    header: Header = field(default_factory=Header)
    name: sequence[str] = field(default_factory=list)
    position: sequence[float64] = field(default_factory=list)
    velocity: sequence[float64] = field(default_factory=list)
    effort: sequence[float64] = field(default_factory=list)


# ---- geometry_msgs -----------------------------------------------------------------------------------------------


@dataclass
class Vector3(IdlStruct, typename="geometry_msgs::msg::dds_::Vector3_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Twist(IdlStruct, typename="geometry_msgs::msg::dds_::Twist_"):
    linear: Vector3 = field(default_factory=Vector3)
    angular: Vector3 = field(default_factory=Vector3)


@dataclass
class TwistStamped(IdlStruct, typename="geometry_msgs::msg::dds_::TwistStamped_"):
    header: Header = field(default_factory=Header)
    twist: Twist = field(default_factory=Twist)


@dataclass
class Point(IdlStruct, typename="geometry_msgs::msg::dds_::Point_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Quaternion(IdlStruct, typename="geometry_msgs::msg::dds_::Quaternion_"):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0
    w: float64 = 1.0  # the .msg default: the identity rotation


@dataclass
class Pose(IdlStruct, typename="geometry_msgs::msg::dds_::Pose_"):
    position: Point = field(default_factory=Point)
    orientation: Quaternion = field(default_factory=Quaternion)


@dataclass
class PoseStamped(IdlStruct, typename="geometry_msgs::msg::dds_::PoseStamped_"):
    header: Header = field(default_factory=Header)
    pose: Pose = field(default_factory=Pose)


# ---- trajectory_msgs ---------------------------------------------------------------------------------------------


@dataclass
class JointTrajectoryPoint(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectoryPoint_"):
    positions: sequence[float64] = field(default_factory=list)
    velocities: sequence[float64] = field(default_factory=list)
    accelerations: sequence[float64] = field(default_factory=list)
    effort: sequence[float64] = field(default_factory=list)
    time_from_start: Duration = field(default_factory=Duration)


@dataclass
class JointTrajectory(IdlStruct, typename="trajectory_msgs::msg::dds_::JointTrajectory_"):
    header: Header = field(default_factory=Header)
    joint_names: sequence[str] = field(default_factory=list)
    points: sequence[JointTrajectoryPoint] = field(default_factory=list)


MESSAGE_TYPES: tuple[type[IdlStruct], ...] = (
    Time, Duration, Header, Bool, String, Image, RegionOfInterest, CameraInfo, JointState, Vector3, Twist,
    TwistStamped, Point, Quaternion, Pose, PoseStamped, JointTrajectoryPoint, JointTrajectory,
)


def dds_type_name(msg_type: type[IdlStruct]) -> str:
    """``sensor_msgs::msg::dds_::Image_``: the name DDS discovery matches on."""
    return msg_type.__idl_typename__


def ros_type_name(msg_type: type[IdlStruct]) -> str:
    """``sensor_msgs/msg/Image``: the name ROS 2 tools and rosbag2 use."""
    pkg, kind, _, name = dds_type_name(msg_type).split("::")
    return f"{pkg}/{kind}/{name.removesuffix('_')}"


# ---- helpers -----------------------------------------------------------------------------------------------------


def stamp(t: float) -> Time:
    """Seconds (e.g. ``time.time()``) -> Time; ``nanosec`` is always in [0, 1e9), ``sec`` rounds down."""
    sec = math.floor(t)
    nanosec = round((t - sec) * 1e9)
    if nanosec >= 1_000_000_000:  # t just below a whole second
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time(sec=sec, nanosec=nanosec)


def to_seconds(t: Time | Duration) -> float:
    """Time or Duration -> seconds as a float."""
    return t.sec + t.nanosec * 1e-9


def image_from_rgb(rgb: np.ndarray, t: float = 0.0, frame_id: str = "") -> Image:
    """An ``rgb8`` Image from a ``(height, width, 3)`` uint8 array; ``step = width * 3``, rows top first."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a (height, width, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    return Image(header=Header(stamp=stamp(t), frame_id=frame_id), height=h, width=w, encoding="rgb8",
                 is_bigendian=0, step=w * 3, data=np.ascontiguousarray(rgb).tobytes())


def rgb_from_image(msg: Image) -> np.ndarray:
    """An ``rgb8`` Image -> ``(height, width, 3)`` uint8 array (a read-only view of ``msg.data``; rows padded past
    ``width * 3`` by a larger ``step`` are cut)."""
    if msg.encoding != "rgb8":
        raise ValueError(f"expected encoding rgb8, got {msg.encoding!r}")
    if msg.step < msg.width * 3 or len(msg.data) != msg.height * msg.step:
        raise ValueError(f"image data of {len(msg.data)} bytes does not fit {msg.height} rows of step {msg.step} "
                         f"for width {msg.width}")
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    return rows[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
