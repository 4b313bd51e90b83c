"""The publishing side of test_transport, run as its own process: ``python loopback_child.py DOMAIN SEED``.

It waits until every topic has a subscriber, publishes one JointState, a 128x128 and a 480x640 rgb8 Image (reliable),
then repeats a best-effort 128x128 Image every 50 ms until a line arrives on stdin (or 20 s pass)."""

import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from robots.ros2 import messages as m  # noqa: E402
from robots.ros2.transport import RELIABLE, SENSOR_DATA, CycloneTransport  # noqa: E402


def expected(seed: int) -> dict[str, object]:
    """topic -> the message published on it, the same for the same seed."""
    rng = np.random.default_rng(seed)
    joints = m.JointState(header=m.Header(stamp=m.stamp(1234.5), frame_id="base"),
                          name=[f"joint{i}" for i in range(1, 8)], position=rng.normal(size=7).tolist(),
                          velocity=rng.normal(size=7).tolist(), effort=[])
    small = m.image_from_rgb(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), t=7.25, frame_id="wrist")
    large = m.image_from_rgb(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), t=8.5, frame_id="scene")
    return {"/joint_states": joints, "/camera/image": small, "/camera/image_large": large, "/camera/sensor": small}


def main(domain_id: int, seed: int) -> None:
    msgs = expected(seed)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()
    with CycloneTransport(domain_id=domain_id) as t:
        pubs = {topic: t.publisher(topic, type(msg), qos=SENSOR_DATA if topic == "/camera/sensor" else RELIABLE)
                for topic, msg in msgs.items()}
        deadline = time.monotonic() + 20
        while not all(p.matched() for p in pubs.values()) and time.monotonic() < deadline:
            time.sleep(0.01)
        for topic in ("/joint_states", "/camera/image", "/camera/image_large"):
            pubs[topic].publish(msgs[topic])
        while not done.wait(0.05) and time.monotonic() < deadline:  # best effort: a sample may be lost, so repeat
            pubs["/camera/sensor"].publish(msgs["/camera/sensor"])


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
