"""ROS 2's own Python client library (rclpy) behind the bridge's ``Transport``, where a ROS 2 distribution is sourced.

``RclpyTransport`` gives the node the same interface as ``CycloneTransport`` and the same message dataclasses
(``robots.ros2.messages``): a message published is converted to the ROS message class of the same name
(``sensor_msgs/msg/Image`` -> ``sensor_msgs.msg.Image``), and a ROS message received is converted back. It runs one
rclpy node in its own ``Context`` (so rclpy installs no signal handlers: Ctrl-C stays a ``KeyboardInterrupt``),
spun by a ``SingleThreadedExecutor`` on a background thread, where subscription callbacks run.

Use it where the robot's stack needs the ROS middleware itself (a non-Cyclone rmw, ROS security, ros2 tooling on
the same participant); otherwise the default ``CycloneTransport`` speaks the same wire format without a ROS install.
It needs a ROS 2 whose rclpy is built for this Python (>= 3.11): Jazzy or later, not Humble (Python 3.10); an arm on
Humble is reached over the network either way.

Status: written against rclpy's documented API (Humble and Jazzy: ``rclpy.init(context=, domain_id=)``,
``Node.create_publisher/create_subscription``, ``QoSProfile``, ``Executor.spin_once``) and rosidl_generator_py's
field representations, but NOT run against a ROS 2 install in this repository's tests (rclpy is neither on PyPI nor
in Debian 12). The tests cover the pure parts: message <-> field conversion, QoS mapping, the missing-rclpy error.

Field representations on the ROS side (rosidl_generator_py): ``float64[]`` is ``array.array('d')``, ``uint8[]`` is
``array.array('B')`` (our ``bytes``; an ``array`` skips the per-element checks rclpy runs on a list, ~100 ms for a
480x640 image), ``float64[N]`` is a float64 ``numpy.ndarray``, ``string[]`` and message sequences are lists.
"""

import array
import dataclasses
import functools
import importlib
import logging
import threading
import typing
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from robots.ros2.messages import ros_type_name
from robots.ros2.transport import RELIABLE, QosProfile, QueuedSubscription, dds_topic_name
from vla_rl.availability import DependencyNotInstalled

log = logging.getLogger(__name__)

# vla-rl needs Python >= 3.11: Jazzy (Ubuntu 24.04, Python 3.12) fits; Humble's rclpy is built for Python 3.10.
ROS_SETUP_HINT = ("source /opt/ros/<distro>/setup.bash (Jazzy or later; Humble's Python 3.10 is too old) in this "
                  "shell, with a venv on that Python (python3 -m venv --system-site-packages), or use --transport "
                  "cyclone (no ROS)")


def import_rclpy() -> Any:
    """Import rclpy, or raise ``DependencyNotInstalled`` with one line saying how to make it importable."""
    try:
        import rclpy
        import rclpy.executors  # noqa: F401  (the C extension loads here: a wrong Python version fails now)
    except ImportError as e:
        raise DependencyNotInstalled(f"--transport rclpy needs rclpy ({e}): {ROS_SETUP_HINT}") from None
    return rclpy


# ---- message <-> fields ------------------------------------------------------------------------------------------

# Field kinds, from the cyclonedds annotations of our message dataclasses.
STRUCT, STRUCTS, FLOATS, FIXED_FLOATS, BYTES, STRINGS, FLOAT, INT, BOOL, STR = (
    "struct", "struct[]", "float64[]", "float64[N]", "uint8[]", "string[]", "float64", "int", "bool", "string")


@functools.cache
def field_kinds(msg_type: type) -> dict[str, tuple[str, type | None]]:
    """``{field: (kind, nested message type or None)}`` of one of our message dataclasses, in field order."""
    from cyclonedds.idl import IdlStruct
    from cyclonedds.idl import types as idl

    def is_msg(t: Any) -> bool:
        return isinstance(t, type) and issubclass(t, IdlStruct)

    def tag(t: Any) -> Any:  # Annotated[float, 'float64'] -> 'float64'; str -> str
        return typing.get_args(t)[1] if typing.get_origin(t) is typing.Annotated else t

    out: dict[str, tuple[str, type | None]] = {}
    hints = typing.get_type_hints(msg_type, include_extras=True)
    for f in dataclasses.fields(msg_type):
        hint = hints[f.name]
        meta = hint.__metadata__[0] if typing.get_origin(hint) is typing.Annotated else None
        if is_msg(hint):
            out[f.name] = (STRUCT, hint)
        elif isinstance(meta, idl.sequence | idl.array):
            sub = meta.subtype
            kinds = {"float64": FIXED_FLOATS if isinstance(meta, idl.array) else FLOATS, str: STRINGS}
            kind = STRUCTS if is_msg(sub) else BYTES if tag(sub) == "uint8" and isinstance(meta, idl.sequence) \
                else kinds.get(tag(sub))
            if kind is None:
                raise TypeError(f"{msg_type.__name__}.{f.name}: no ROS mapping for {hint}")
            out[f.name] = (kind, sub if is_msg(sub) else None)
        else:
            t = tag(hint)
            out[f.name] = (FLOAT if t == "float64" else BOOL if t is bool else STR if t is str else INT, None)
    return out


def _to_ros(msg: Any, make: Callable[[type, dict[str, Any]], Any]) -> Any:
    fields: dict[str, Any] = {}
    for name, (kind, _) in field_kinds(type(msg)).items():
        v = getattr(msg, name)
        if kind == STRUCT:
            v = _to_ros(v, make)
        elif kind == STRUCTS:
            v = [_to_ros(x, make) for x in v]
        elif kind == FLOATS:
            v = array.array("d", v)
        elif kind == FIXED_FLOATS:
            v = np.asarray(v, dtype=np.float64)
        elif kind == BYTES:
            v = array.array("B", bytes(v))
        elif kind == STRINGS:
            v = [str(x) for x in v]
        else:
            v = {FLOAT: float, INT: int, BOOL: bool, STR: str}[kind](v)
        fields[name] = v
    return make(type(msg), fields)


def to_ros_fields(msg: Any) -> dict[str, Any]:
    """One of our messages -> ``{field: value}`` as rclpy's message classes hold them (nested messages as dicts)."""
    return _to_ros(msg, lambda _, fields: fields)


def to_ros(msg: Any, resolve: Callable[[type], type] | None = None) -> Any:
    """One of our messages -> an instance of its ROS message class (``resolve``: our type -> that class)."""
    resolve = resolve or ros_message_class
    return _to_ros(msg, lambda t, fields: resolve(t)(**fields))


def from_ros(msg_type: type, source: Any) -> Any:
    """A ROS message (read by attribute) or a dict of its fields (``to_ros_fields``) -> our ``msg_type``.

    Sequences come back as lists and ``uint8[]`` as ``bytes``, so the result equals the message that was sent."""
    get = source.__getitem__ if isinstance(source, Mapping) else functools.partial(getattr, source)
    fields: dict[str, Any] = {}
    for name, (kind, sub) in field_kinds(msg_type).items():
        v = get(name)
        if kind == STRUCT:
            v = from_ros(sub, v)
        elif kind == STRUCTS:
            v = [from_ros(sub, x) for x in v]
        elif kind in (FLOATS, FIXED_FLOATS):
            v = [float(x) for x in v]
        elif kind == BYTES:
            v = bytes(v)  # array.array('B') and bytes-likes through the buffer protocol, one copy
        elif kind == STRINGS:
            v = [str(x) for x in v]
        else:
            v = {FLOAT: float, INT: int, BOOL: bool, STR: str}[kind](v)
        fields[name] = v
    return msg_type(**fields)


@functools.cache
def ros_message_class(msg_type: type) -> type:
    """Our ``sensor_msgs::msg::dds_::Image_`` dataclass -> rclpy's ``sensor_msgs.msg.Image`` class."""
    pkg, kind, name = ros_type_name(msg_type).split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ImportError, AttributeError) as e:
        raise DependencyNotInstalled(f"the ROS message {pkg}/{kind}/{name} is not importable ({e}): install "
                                     f"ros-<distro>-{pkg.replace('_', '-')} and {ROS_SETUP_HINT}") from None


def ros_qos_fields(qos: QosProfile) -> dict[str, Any]:
    """Our QoS preset -> rclpy ``QoSProfile`` keyword arguments, the policies by their enum member names."""
    return {"history": "KEEP_LAST", "depth": qos.depth, "reliability": "RELIABLE" if qos.reliable else "BEST_EFFORT",
            "durability": "VOLATILE"}


def ros_qos(qos: QosProfile) -> Any:
    """Our QoS preset -> an rclpy ``QoSProfile`` (RELIABLE: rclpy's default profile; SENSOR_DATA: its
    ``qos_profile_sensor_data``)."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    f = ros_qos_fields(qos)
    return QoSProfile(history=HistoryPolicy[f["history"]], depth=f["depth"],
                      reliability=ReliabilityPolicy[f["reliability"]], durability=DurabilityPolicy[f["durability"]])


# ---- publisher, subscription, transport --------------------------------------------------------------------------


class _RclpyPublisher:
    def __init__(self, publisher: Any, topic: str):
        self._pub, self.topic = publisher, topic

    def publish(self, msg: Any) -> None:
        self._pub.publish(to_ros(msg))

    def matched(self) -> int:
        return self._pub.get_subscription_count()


class _RclpySubscription(QueuedSubscription):
    """Messages arrive on the executor thread, converted to our type."""

    def __init__(self, node: Any, topic: str, msg_type: type, callback: Callable[[Any], None] | None, depth: int):
        super().__init__(topic, msg_type, callback, depth)
        self._node = node
        self.handle: Any = None  # the rclpy Subscription, set by the transport

    def deliver(self, ros_msg: Any) -> None:
        try:
            msg = from_ros(self._type, ros_msg)
        except Exception:  # a message we cannot convert must not stop the executor thread
            log.exception("message on %s", self.topic)
            return
        self._deliver([msg])

    def matched(self) -> int:
        count = getattr(self.handle, "get_publisher_count", None)  # Jazzy and later: QoS-matched publishers
        return count() if count is not None else self._node.count_publishers(self.topic)  # Humble: on the graph


class RclpyTransport:
    """A ``Transport`` over rclpy: one node ``node_name`` on ROS domain ``domain_id``. The middleware is the one
    ``RMW_IMPLEMENTATION`` selects (use ``rmw_cyclonedds_cpp`` with ``CYCLONEDDS_URI``, as launch/deploy.launch.py
    does). Use as a context manager, or call ``close()``."""

    def __init__(self, domain_id: int = 0, node_name: str = "vla_rl"):
        rclpy = import_rclpy()
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self.domain_id = domain_id
        self._context = Context()
        rclpy.init(context=self._context, domain_id=domain_id)  # a non-default context: no signal handlers
        self.node = rclpy.create_node(node_name, context=self._context)
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self._types: dict[str, type] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f"rclpy-{node_name}", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self._context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.1)  # a bounded wait, so close() is seen within 0.1 s
            except Exception:
                if self._stop.is_set() or not self._context.ok():
                    return
                log.exception("rclpy executor")

    def _check(self, topic: str, msg_type: type) -> None:
        dds_topic_name(topic)  # the same absolute-name check as CycloneTransport
        if self._types.setdefault(topic, msg_type) is not msg_type:
            raise TypeError(f"{topic} is already used with {self._types[topic].__name__}")

    def publisher(self, topic: str, msg_type: type, qos: QosProfile = RELIABLE) -> _RclpyPublisher:
        self._check(topic, msg_type)
        return _RclpyPublisher(self.node.create_publisher(ros_message_class(msg_type), topic, ros_qos(qos)), topic)

    def subscribe(self, topic: str, msg_type: type, callback: Callable[[Any], None] | None = None,
                  qos: QosProfile = RELIABLE) -> _RclpySubscription:
        self._check(topic, msg_type)
        sub = _RclpySubscription(self.node, topic, msg_type, callback, qos.depth)
        sub.handle = self.node.create_subscription(ros_message_class(msg_type), topic, sub.deliver, ros_qos(qos))
        return sub

    def close(self) -> None:
        """Stop the executor thread, destroy the node and shut the context down (callbacks stop)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._executor.shutdown(timeout_sec=1)
        self.node.destroy_node()
        self._context.try_shutdown()

    def __enter__(self) -> "RclpyTransport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
