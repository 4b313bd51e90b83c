"""Record a robot's ROS 2 topics to a rosbag2 MCAP bag, and turn a bag into a LeRobot v3 dataset.

``record_bag`` subscribes (through a ``Transport``, no ROS install) to the robot's camera images, joint states, pose,
instruction, twist and gripper commands and, on a twin, ``/twin/status``, and writes each message as it arrives with
rosbags' rosbag2 writer (MCAP storage): the ROS 2 type name (``sensor_msgs/msg/Image``), the message definition from
rosbags' ROS 2 Humble typestore as the MCAP schema, the CDR bytes of ``msg.serialize()`` (what a ROS 2 node puts on
the wire) and a timestamp in ns: the header stamp where the message has one, else the time it arrived. The robot
config goes into the bag's metadata (``custom_data["vla_rl.robot"]``) so a conversion uses the same action units.
The bag is written under a temporary folder beside the final path and renamed there at the end: an interrupted
recording never leaves a half bag at the final path; Ctrl-C (KeyboardInterrupt) or ``stop`` ends it cleanly.

``convert_bag`` makes one dataset frame per commanded step: each TwistStamped command with its gripper
JointTrajectory (paired by stamp, else the last opening, as the twin does), the newest image of every camera and the
newest pose and finger joints stamped at or before the command (-> the policy's 8-dim state), the action by
``convert.command_to_action`` (the twin's own conversion, so a replay applies the same action) and the instruction
as the task. ``/twin/status`` splits episodes (by seed) and gives success; commands the twin ignored (after its
episode was done) are dropped. Without it the bag is one episode without seed.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robots.config import RobotConfig
from robots.ros2 import messages as m
from robots.ros2.convert import command_to_action, state_from_pose
from robots.ros2.transport import RELIABLE, SENSOR_DATA, QosProfile, Transport, sigint_sets

BAG_VERSION = 8  # rosbag2 metadata version (Jazzy's); the newest rosbags 0.11 writes are 8 and 9
ROBOT_KEY = "vla_rl.robot"


def bag_topics(cfg: RobotConfig, twin: bool = True) -> dict[str, tuple[type, QosProfile]]:
    """The topics a recording takes: ROS 2 topic -> (message type, the QoS its publisher offers)."""
    tp = cfg.topics
    topics: dict[str, tuple[type, QosProfile]] = {tp.image_topic(c): (m.Image, SENSOR_DATA) for c in cfg.cameras}
    topics.update({tp.joint_states: (m.JointState, SENSOR_DATA), tp.pose: (m.PoseStamped, SENSOR_DATA),
                   tp.instruction: (m.String, RELIABLE), tp.twist: (m.TwistStamped, RELIABLE),
                   tp.gripper: (m.JointTrajectory, RELIABLE)})
    if twin:
        topics[tp.twin_status] = (m.String, QosProfile(depth=100))
    return topics


def _stamp_ns(msg: Any, received: float) -> int:
    header = getattr(msg, "header", None)
    if header is not None:
        return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
    return int(received * 1e9)


def record_bag(transport: Transport, cfg: RobotConfig, path: str | Path, topics: list[str] | None = None,
               max_s: float | None = None, stop: threading.Event | Callable[[], bool] | None = None,
               ready: threading.Event | None = None) -> dict[str, int]:
    """Record ``topics`` (default: all of `bag_topics`) to a rosbag2 MCAP bag at ``path`` (a folder that must not
    exist) until ``stop`` is set (an Event or a callable returning True), ``max_s`` seconds pass or Ctrl-C.
    ``ready`` is set once every topic is subscribed. Returns the message count per topic."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; a bag is written to a new folder")
    available = bag_topics(cfg)
    topics = list(available) if topics is None else list(topics)
    unknown = [t for t in topics if t not in available]
    if unknown:
        raise ValueError(f"unknown topics {unknown}; a recording takes {list(available)}")
    stopped = stop.is_set if isinstance(stop, threading.Event) else (stop or (lambda: False))
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    inbox: queue.Queue = queue.Queue()  # DDS listener threads put, this thread writes
    counts = dict.fromkeys(topics, 0)
    try:
        writer = Writer(tmp / path.name, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        writer.set_custom_data(ROBOT_KEY, cfg.model_dump_json())
        writer.open()
        try:
            conns = {t: writer.add_connection(t, m.ros_type_name(available[t][0]), typestore=typestore)
                     for t in topics}
            for t in topics:
                msg_type, qos = available[t]
                transport.subscribe(t, msg_type, callback=lambda msg, t=t: inbox.put((t, msg, time.time())), qos=qos)
            if ready is not None:
                ready.set()
            end = None if max_s is None else time.monotonic() + max_s
            interrupted = threading.Event()
            with sigint_sets(interrupted), contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: a clean end
                while not interrupted.is_set() and not stopped() and (end is None or time.monotonic() < end):
                    _drain(inbox, writer, conns, counts, timeout=0.05)
            _drain(inbox, writer, conns, counts, timeout=0.0)
        finally:
            writer.close()
        path_tmp = tmp / path.name
        path_tmp.rename(path)  # the commit point
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


def _drain(inbox: queue.Queue, writer: Any, conns: dict[str, Any], counts: dict[str, int], timeout: float) -> None:
    try:
        item = inbox.get(timeout=timeout) if timeout > 0 else inbox.get_nowait()
    except queue.Empty:
        return
    while True:
        topic, msg, received = item
        writer.write(conns[topic], _stamp_ns(msg, received), msg.serialize())
        counts[topic] += 1
        try:
            item = inbox.get_nowait()
        except queue.Empty:
            return


# ---- conversion --------------------------------------------------------------------------------------------------


@dataclass
class _Stream:
    """One topic's messages in stamp order: stamps (ns) and the decoded messages."""

    stamps: list[int] = field(default_factory=list)
    msgs: list[Any] = field(default_factory=list)

    def at(self, t: int) -> Any | None:
        """The newest message stamped at or before ``t`` (None if there is none)."""
        i = int(np.searchsorted(np.asarray(self.stamps, dtype=np.int64), t, side="right")) - 1
        return self.msgs[i] if i >= 0 else None


def read_bag(bag: str | Path) -> tuple[dict[str, _Stream], dict[str, str], dict[str, str]]:
    """(topic -> stream sorted by timestamp, topic -> ROS 2 type name, the bag's custom data)."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    streams: dict[str, _Stream] = {}
    with Reader(bag) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        rows = sorted(((ts, c.topic, typestore.deserialize_cdr(raw, c.msgtype))
                       for c, ts, raw in reader.messages()), key=lambda r: r[0])
    custom = bag_custom_data(bag)
    for ts, topic, msg in rows:
        s = streams.setdefault(topic, _Stream())
        s.stamps.append(ts)
        s.msgs.append(msg)
    return streams, types, custom


def bag_custom_data(bag: str | Path) -> dict[str, str]:
    """The ``custom_data`` of a bag's ``metadata.yaml`` (rosbag2 metadata version >= 6), {} when absent."""
    import yaml

    with open(Path(bag) / "metadata.yaml") as f:
        info = yaml.safe_load(f).get("rosbag2_bagfile_information", {})
    return dict(info.get("custom_data") or {})


def _robot_of(bag: Path, custom: dict[str, str], robot: RobotConfig | None) -> RobotConfig:
    if robot is not None:
        return robot
    if ROBOT_KEY in custom:
        return RobotConfig.model_validate_json(custom[ROBOT_KEY])
    raise ValueError(f"{bag} carries no robot config (metadata custom_data {ROBOT_KEY!r}): pass robot=")


def convert_bag(bag: str | Path, out: str | Path, task: str | None = None, fps: int | None = None,
                robot: RobotConfig | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Turn the rosbag2 bag at ``bag`` into a LeRobot v3 dataset at ``out`` (see the module doc).

    ``task``: the env id (``mujoco/Reach-v1``) stored as ``info.vla_rl.env_task`` so ``vla-rl replay`` can
    re-execute an episode from its seed. ``fps``: the dataset's rate (default the robot's control rate).
    ``robot``: the config whose action units the commands use (default: the one recorded in the bag).
    Returns a summary: episodes, frames, seeds, successes, commands dropped."""
    from vla_rl.data.lerobot import LeRobotWriter

    bag = Path(bag)
    streams, types, custom = read_bag(bag)
    cfg = _robot_of(bag, custom, robot)
    tp = cfg.topics
    _check_topics(bag, cfg, types)
    grippers = {(g.header.stamp.sec, g.header.stamp.nanosec): float(np.mean(g.points[0].positions))
                for g in streams.get(tp.gripper, _Stream()).msgs if g.points and len(g.points[0].positions)}
    status = _statuses(streams.get(tp.twin_status))
    extra = {"source": "rosbag2", "bag": str(bag), "robot": cfg.name}
    if task:
        extra["env_task"] = task
    writer = LeRobotWriter(out, cameras=tuple(cfg.cameras), fps=int(fps or round(cfg.control_hz)),
                           info_extra=extra, overwrite=overwrite)
    episodes: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    dropped = 0
    try:
        for ts, cmd in zip(streams[tp.twist].stamps, streams[tp.twist].msgs, strict=True):
            st = status.at(ts) if status is not None else None
            seed = None if st is None else st["seed"]
            if status is not None and (st is None or st["done"] or seed is None):
                dropped += 1  # before the first episode, or after the twin's episode ended: the twin ignored it
                continue
            if current is None or seed != current["seed"]:
                _end(writer, current, episodes)
                current = {"seed": seed, "frames": 0, "success": None, "opening": cfg.finger_open}
            obs = _observation(streams, cfg, ts)
            if obs is None:
                dropped += 1  # no complete observation yet
                continue
            pose, joints, images, instruction = obs
            key = (cmd.header.stamp.sec, cmd.header.stamp.nanosec)
            current["opening"] = grippers.get(key, current["opening"])
            action = _action(cmd, current["opening"], cfg)
            if current["frames"] == 0:
                writer.start(instruction, seed=seed)
            success = False
            if status is not None:  # the status after this step: the first one of this seed with steps > frames
                after = status.step_status(seed, current["frames"] + 1)
                success = bool(after and after["success"])
                current["success"] = bool(current["success"]) or success
            writer.add_frame({**images, "state": _state(pose, joints, cfg)}, action, success)
            current["frames"] += 1
        _end(writer, current, episodes)
    finally:
        summary = writer.close()
    return {"out": str(out), "episodes": len(episodes), "frames": summary["frames"],
            "seeds": [e["seed"] for e in episodes], "successes": [e["success"] for e in episodes],
            "frames_per_episode": [e["frames"] for e in episodes], "dropped_commands": dropped}


def _check_topics(bag: Path, cfg: RobotConfig, types: Mapping[str, str]) -> None:
    """Refuse a bag that lacks a topic the frames are made of, naming it."""
    tp = cfg.topics
    needed = [tp.twist, tp.pose, tp.joint_states, tp.instruction, *(tp.image_topic(c) for c in cfg.cameras)]
    missing = [t for t in needed if t not in types]
    if missing:
        raise ValueError(f"{bag} lacks the topic(s) {missing}, needed to make frames (it has {sorted(types)})")


def _state(pose: Any, joints: Any, cfg: RobotConfig) -> np.ndarray:
    """The policy's state float32 (8,): TCP position and axis-angle from ``pose``, the fingers from ``joints``."""
    p, q = pose.pose.position, pose.pose.orientation
    fingers = [list(joints.name).index(n) for n in cfg.finger_joints]
    return state_from_pose(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]),
                           np.asarray(joints.position)[fingers])


def _action(cmd: Any, opening: float, cfg: RobotConfig) -> np.ndarray:
    """The env action (7,) the twin applied for the TwistStamped ``cmd`` at finger ``opening`` (its conversion)."""
    tw = cmd.twist
    return command_to_action([tw.linear.x, tw.linear.y, tw.linear.z], [tw.angular.x, tw.angular.y, tw.angular.z],
                             opening, cfg.dt, cfg.pos_scale, cfg.rot_scale, cfg.finger_open)


def _end(writer: Any, current: dict[str, Any] | None, episodes: list[dict[str, Any]]) -> None:
    if current is not None and current["frames"]:
        writer.end_episode(seed=current["seed"], success=current["success"])
        episodes.append(current)


def _observation(streams: dict[str, _Stream], cfg: RobotConfig, t: int):
    tp = cfg.topics
    pose, joints = streams[tp.pose].at(t), streams[tp.joint_states].at(t)
    images = {c: streams[tp.image_topic(c)].at(t) for c in cfg.cameras}
    if pose is None or joints is None or any(v is None for v in images.values()):
        return None
    instr = streams[tp.instruction].at(t) or streams[tp.instruction].msgs[0]
    return pose, joints, {c: _rgb(img) for c, img in images.items()}, instr.data


def _rgb(img: Any) -> np.ndarray:
    if img.encoding != "rgb8":
        raise ValueError(f"expected rgb8 images, got {img.encoding!r}")
    rows = np.asarray(img.data, dtype=np.uint8).reshape(img.height, img.step)
    return rows[:, : img.width * 3].reshape(img.height, img.width, 3).copy()


class _Statuses:
    """The twin's status messages (JSON: seed, steps, success, done, stamp), ordered by their own stamp."""

    def __init__(self, rows: list[dict[str, Any]]):
        rows = sorted(rows, key=lambda r: r["stamp"])
        self.rows = rows
        self.stamps = [int(round(r["stamp"] * 1e9)) for r in rows]

    def at(self, t: int) -> dict[str, Any] | None:
        i = int(np.searchsorted(np.asarray(self.stamps, dtype=np.int64), t, side="right")) - 1
        return self.rows[i] if i >= 0 else None

    def step_status(self, seed: int, steps: int) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["seed"] == seed and r["steps"] == steps), None)


def _statuses(stream: _Stream | None) -> _Statuses | None:
    if stream is None or not stream.msgs:
        return None
    return _Statuses([json.loads(s.data) for s in stream.msgs])
