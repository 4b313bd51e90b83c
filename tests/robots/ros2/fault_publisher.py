"""A robot's publishers as their own process, for test_faults: ``python fault_publisher.py DOMAIN ROLE [SIZE]``.

Roles (topics and joints from configs/robots/twin.yaml, stamps ``time.time()``):

- ``cameras``: one rgb8 ``SIZE`` x ``SIZE`` Image per camera at 30 Hz, as a camera driver does;
- ``state``: the arm's and fingers' JointState and the end-effector PoseStamped at 50 Hz (a pose inside the
  workspace), as the arm's drivers do;
- ``estop``: reads commands from stdin, one a line: ``press``, ``release`` (``/estop`` True / False) or ``reset``
  (``/estop/reset`` True), publishes it and answers ``sent``.

Each prints ``ready`` once every topic it publishes has a subscriber, then runs until killed or stdin closes.
"""

import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from robots.config import load_robot_config  # noqa: E402
from robots.ros2 import messages as m  # noqa: E402
from robots.ros2.transport import RELIABLE, SENSOR_DATA, CycloneTransport  # noqa: E402

CFG = load_robot_config(ROOT / "configs" / "robots" / "twin.yaml")
ARM = [0.0, 0.2, 0.0, -1.8, 0.0, 2.0, 0.8]  # rad, inside every Panda limit


def wait_matched(pubs, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.matched() for p in pubs) and time.monotonic() < deadline:
        time.sleep(0.005)
    print("ready", flush=True)


def at_rate(hz: float, publish, stop: threading.Event) -> None:
    period, next_t = 1.0 / hz, time.monotonic()
    while not stop.is_set():
        publish(time.time())
        next_t += period
        time.sleep(max(0.0, next_t - time.monotonic()))


def cameras(t: CycloneTransport, size: int, stop: threading.Event) -> None:
    pubs = {c: t.publisher(CFG.topics.image_topic(c), m.Image, SENSOR_DATA) for c in CFG.cameras}
    rgb = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    wait_matched(pubs.values())
    at_rate(30.0, lambda now: [p.publish(m.image_from_rgb(rgb, now, c)) for c, p in pubs.items()], stop)


def state(t: CycloneTransport, stop: threading.Event) -> None:
    joints = t.publisher(CFG.topics.joint_states, m.JointState, SENSOR_DATA)
    pose = t.publisher(CFG.topics.pose, m.PoseStamped, SENSOR_DATA)
    names = list(CFG.arm_joints) + list(CFG.finger_joints)

    def publish(now: float) -> None:
        header = m.Header(stamp=m.stamp(now), frame_id=CFG.base_frame)
        joints.publish(m.JointState(header=header, name=names, position=ARM + [0.04, 0.04], velocity=[0.0] * 9))
        pose.publish(m.PoseStamped(header=header, pose=m.Pose(position=m.Point(0.5, 0.0, 0.3),
                                                               orientation=m.Quaternion(1.0, 0.0, 0.0, 0.0))))

    wait_matched([joints, pose])
    at_rate(50.0, publish, stop)


def estop(t: CycloneTransport) -> None:
    pubs = {"estop": t.publisher(CFG.topics.estop, m.Bool, RELIABLE),
            "reset": t.publisher(CFG.topics.estop_reset, m.Bool, RELIABLE)}
    wait_matched(pubs.values())
    for line in sys.stdin:
        word = line.strip()
        if word in ("press", "release"):
            pubs["estop"].publish(m.Bool(word == "press"))
        elif word == "reset":
            pubs["reset"].publish(m.Bool(True))
        else:
            raise SystemExit(f"unknown command {word!r}: press, release or reset")
        print("sent", flush=True)


def main(domain: int, role: str, size: int) -> None:
    stop = threading.Event()
    with CycloneTransport(domain_id=domain) as t:
        if role == "estop":
            estop(t)
            return
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()  # stdin closed: end
        cameras(t, size, stop) if role == "cameras" else state(t, stop)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 32)
