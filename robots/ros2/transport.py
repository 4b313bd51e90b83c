"""Publish and subscribe ROS 2 messages behind one small interface, and Cyclone DDS speaking ROS 2's wire format.

The bridge's nodes talk to a ``Transport``: ``publisher(topic, type)`` gives a ``Publisher`` (``publish(msg)``),
``subscribe(topic, type, callback=None)`` gives a ``Subscription`` (``latest()``, ``take()``, ``wait(timeout)``), and
``close()`` ends it. ``CycloneTransport`` implements it with the ``cyclonedds`` wheel, no ROS install: the ROS 2 topic
``/camera/image`` is the DDS topic ``rt/camera/image`` with type ``sensor_msgs::msg::dds_::Image_`` (the names
rmw_cyclonedds uses), so a ROS 2 node on the same domain and network sees our topics as its own.

``RclpyTransport`` (``robots.ros2.rclpy_transport``, where a ROS 2 distribution is sourced) implements the same
Protocol over rclpy; ``make_transport(name, domain_id)`` picks one by name (the CLI's ``--transport``).
"""

import contextlib
import logging
import os
import random
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from vla_rl.availability import require

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QosProfile:
    """The QoS a topic's two ends agree on. Durability is always volatile (ROS 2's default): late joiners get only
    what is published after they match."""

    reliable: bool = True  # False: best effort (a lost sample is not resent)
    depth: int = 10  # keep-last history on both ends


RELIABLE = QosProfile()  # rclpy's default profile: reliable, keep-last 10, volatile
SENSOR_DATA = QosProfile(reliable=False, depth=5)  # rclpy's qos_profile_sensor_data


def dds_topic_name(topic: str) -> str:
    """ROS 2 topic -> DDS topic: ``/camera/image`` -> ``rt/camera/image`` (absolute names only)."""
    parts = topic.split("/")
    if not topic.startswith("/") or len(parts) < 2 or not all(parts[1:]):
        raise ValueError(f"expected an absolute ROS 2 topic such as '/camera/image', got {topic!r}")
    return "rt" + topic


class Publisher(Protocol):
    topic: str

    def publish(self, msg: Any) -> None: ...

    def matched(self) -> int:
        """How many subscriptions currently receive this topic."""
        ...


class Subscription(Protocol):
    topic: str

    def latest(self) -> Any | None:
        """The newest message received, or None before the first; reading it does not consume it."""
        ...

    def take(self) -> list[Any]:
        """The messages queued since the last take/wait, oldest first (at most the QoS depth), removing them."""
        ...

    def wait(self, timeout: float) -> Any | None:
        """The oldest queued message, waiting up to ``timeout`` seconds for one; None on timeout."""
        ...

    def matched(self) -> int:
        """How many publishers currently feed this subscription."""
        ...


class Transport(Protocol):
    def publisher(self, topic: str, msg_type: type, qos: QosProfile = RELIABLE) -> Publisher: ...

    def subscribe(self, topic: str, msg_type: type, callback: Callable[[Any], None] | None = None,
                  qos: QosProfile = RELIABLE) -> Subscription: ...

    def close(self) -> None: ...


# ---- Cyclone DDS -------------------------------------------------------------------------------------------------

# UDP datagrams up to 64 KB on loopback (its MTU is 65536), so a 128x128 RGB image (49 KB) travels as one or two
# datagrams and a 480x640 one (922 KB) as ~15, not ~700 of the default 1344 B fragments. The receive buffer asks for
# up to 4 MiB (net.core.rmem_max on a stock Linux caps it there; Cyclone takes less without failing).
LOOPBACK_CONFIG = """<CycloneDDS xmlns="https://cdds.io/config">
  <Domain id="any">
    <General>
      <Interfaces><NetworkInterface name="lo"/></Interfaces>
      <AllowMulticast>false</AllowMulticast>
      <MaxMessageSize>{max_message}B</MaxMessageSize>
      <FragmentSize>{fragment}B</FragmentSize>
    </General>
    <Discovery>
      <ParticipantIndex>auto</ParticipantIndex>
      <MaxAutoParticipantIndex>{max_participants}</MaxAutoParticipantIndex>
      <Peers><Peer address="127.0.0.1"/></Peers>
    </Discovery>
    <Internal>
      <SocketReceiveBufferSize min="default" max="4MiB"/>
    </Internal>
  </Domain>
</CycloneDDS>"""


def free_domain() -> int:
    """A random DDS domain id in 100..230 (RTPS ports 7400 + 250 * id stay below 65535), so that concurrent test runs
    and benches on one machine do not see each other's topics."""
    return random.SystemRandom().randint(100, 230)


def loopback_config(max_message: int = 65000, fragment: int = 64000, max_participants: int = 32) -> str:
    """The Cyclone XML that keeps a domain on 127.0.0.1: interface ``lo``, no multicast, unicast discovery of the
    local participant indices (at most ``max_participants`` processes per domain on this host)."""
    return LOOPBACK_CONFIG.format(max_message=max_message, fragment=fragment, max_participants=max_participants)


def _dds_qos(qos: QosProfile):
    from cyclonedds.core import Policy, Qos
    from cyclonedds.util import duration

    reliability = Policy.Reliability.BestEffort
    if qos.reliable:  # a full history blocks write() for at most 100 ms (the DDS default)
        reliability = Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100))
    return Qos(reliability, Policy.History.KeepLast(qos.depth), Policy.Durability.Volatile)


class _CyclonePublisher:
    def __init__(self, writer, topic: str):
        self._writer, self.topic = writer, topic

    def publish(self, msg: Any) -> None:
        self._writer.write(msg)

    def matched(self) -> int:
        return len(self._writer.get_matched_subscriptions())


class QueuedSubscription:
    """What both transports' subscriptions share: messages arrive on a middleware thread, are queued (QoS depth),
    kept as ``latest`` and handed to the callback there, so a callback must be quick and thread-safe. A subclass
    calls ``_deliver`` with each message and says how many publishers match (``matched``)."""

    def __init__(self, topic: str, msg_type: type, callback: Callable[[Any], None] | None, depth: int):
        self.topic, self._type, self._callback = topic, msg_type, callback
        self._queue: deque = deque(maxlen=depth)
        self._latest = None
        self._cond = threading.Condition()

    def _deliver(self, msgs: list[Any]) -> None:
        with self._cond:
            self._queue.extend(msgs)
            self._latest = msgs[-1]
            self._cond.notify_all()
        if self._callback is not None:
            for msg in msgs:
                try:
                    self._callback(msg)
                except Exception:  # an exception must not unwind into the middleware's thread
                    log.exception("callback for %s raised", self.topic)

    def latest(self) -> Any | None:
        with self._cond:
            return self._latest

    def take(self) -> list[Any]:
        with self._cond:
            out = list(self._queue)
            self._queue.clear()
            return out

    def wait(self, timeout: float) -> Any | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._queue, timeout=timeout):
                return None
            return self._queue.popleft()


class _CycloneSubscription(QueuedSubscription):
    """Samples arrive on a Cyclone listener thread."""

    def __init__(self, topic: str, msg_type: type, callback: Callable[[Any], None] | None, depth: int):
        super().__init__(topic, msg_type, callback, depth)
        self.reader = None  # set by the transport once the reader exists

    def on_data_available(self, reader) -> None:
        samples = [s for s in reader.take(N=64) if isinstance(s, self._type)]  # skips dispose/unregister notices
        if samples:
            self._deliver(samples)

    def matched(self) -> int:
        return len(self.reader.get_matched_publications())


class CycloneTransport:
    """A ``Transport`` over Cyclone DDS, one participant on ``domain_id``. ``loopback=True`` (the default, and what
    tests use) keeps all traffic on 127.0.0.1 with ``loopback_config()``; ``loopback=False`` takes Cyclone's own
    configuration (the ``CYCLONEDDS_URI`` environment variable, else its defaults), as on a robot's network.

    Use as a context manager, or call ``close()``."""

    def __init__(self, domain_id: int = 0, loopback: bool = True, config: str | None = None):
        require("cyclonedds")  # a missing extra raises with: pip install -e ".[ros2]"
        from cyclonedds.domain import Domain, DomainParticipant

        if config is None and loopback:
            config = loopback_config()
        # The Domain object carries the configuration and must outlive the participant.
        self._domain = Domain(domain_id, config) if config is not None else None
        self.participant = DomainParticipant(domain_id)
        self.domain_id = domain_id
        self._topics: dict[str, Any] = {}
        self._entities: list[Any] = []

    def _topic(self, topic: str, msg_type: type):
        from cyclonedds.topic import Topic

        name = dds_topic_name(topic)
        if name not in self._topics:
            self._topics[name] = Topic(self.participant, name, msg_type)
        elif self._topics[name].data_type is not msg_type:
            raise TypeError(f"{topic} is already used with {self._topics[name].data_type.__name__}")
        return self._topics[name]

    def publisher(self, topic: str, msg_type: type, qos: QosProfile = RELIABLE) -> Publisher:
        from cyclonedds.pub import DataWriter

        writer = DataWriter(self.participant, self._topic(topic, msg_type), qos=_dds_qos(qos))
        self._entities.append(writer)
        return _CyclonePublisher(writer, topic)

    def subscribe(self, topic: str, msg_type: type, callback: Callable[[Any], None] | None = None,
                  qos: QosProfile = RELIABLE) -> Subscription:
        from cyclonedds.core import Listener
        from cyclonedds.sub import DataReader

        sub = _CycloneSubscription(topic, msg_type, callback, qos.depth)
        listener = Listener(on_data_available=sub.on_data_available)
        sub.reader = DataReader(self.participant, self._topic(topic, msg_type), qos=_dds_qos(qos), listener=listener)
        self._entities.append(sub.reader)
        return sub

    def close(self) -> None:
        """Delete the participant and everything under it (readers stop calling back)."""
        if self.participant is None:
            return
        # cyclonedds' Python entities stay registered (alive) until their __del__ runs dds_delete: children first.
        for entity in [*reversed(self._entities), *self._topics.values(), self.participant, self._domain]:
            if entity is not None:
                entity.__del__()
        self._entities.clear()
        self._topics.clear()
        self.participant = self._domain = None

    def __enter__(self) -> "CycloneTransport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def sigint_sets(flag: threading.Event) -> Iterator[None]:
    """In the main thread, Ctrl-C (SIGINT) sets ``flag`` for the duration instead of raising KeyboardInterrupt
    wherever the thread is: raised inside a lock's handling (a queue, a Condition a middleware thread also takes),
    it can leave the lock held and hang the process (a CI run's `record-bag` did not end within 60 s of Ctrl-C).
    For the long-running loops (`record-bag`, `deploy`), which check ``flag``; the previous handler comes back
    after. In another thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: flag.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# ---- choosing one ------------------------------------------------------------------------------------------------

TRANSPORTS = ("cyclone", "rclpy")


def make_transport(name: str, domain_id: int = 0, node_name: str = "vla_rl") -> Transport:
    """The transport ``name`` on DDS / ROS domain ``domain_id``.

    ``cyclone``: ``CycloneTransport`` on loopback, unless ``CYCLONEDDS_URI`` is set: then Cyclone's configuration
    comes from it (a robot's network, e.g. ``launch/cyclonedds.xml``). ``rclpy``: ``RclpyTransport``, one node
    ``node_name``; raises ``DependencyNotInstalled`` (one line: what to source) where rclpy is not importable."""
    if name == "cyclone":
        return CycloneTransport(domain_id, loopback=not os.environ.get("CYCLONEDDS_URI"))
    if name == "rclpy":
        from robots.ros2.rclpy_transport import RclpyTransport

        return RclpyTransport(domain_id, node_name=node_name)
    raise ValueError(f"unknown transport {name!r}; valid: {', '.join(TRANSPORTS)}")
