"""CycloneTransport over real DDS on loopback: a publisher in a child process (``loopback_child.py``), the subscriber
here. Each run takes a random domain id so concurrent runs on one host do not hear each other; all traffic stays on
127.0.0.1 (``loopback_config``)."""

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="the ros2 extra is not installed: pip install -e '.[ros2]'")

from robots.ros2 import messages as m  # noqa: E402
from robots.ros2.transport import RELIABLE, SENSOR_DATA, CycloneTransport, dds_topic_name, free_domain  # noqa: E402

CHILD = Path(__file__).with_name("loopback_child.py")
TIMEOUT = 15.0  # seconds for discovery + delivery; a healthy run needs well under one


def _child_module():
    spec = importlib.util.spec_from_file_location("loopback_child", CHILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_topic_names():
    assert dds_topic_name("/camera/image") == "rt/camera/image"
    assert dds_topic_name("/joint_states") == "rt/joint_states"
    for bad in ("camera/image", "/camera/", "//x", "/"):
        with pytest.raises(ValueError, match="absolute ROS 2 topic"):
            dds_topic_name(bad)


def test_child_process_publishes_and_we_receive_equal_messages():
    seed, domain = 7, free_domain()
    expected = _child_module().expected(seed)
    with CycloneTransport(domain_id=domain) as t:
        subs = {topic: t.subscribe(topic, type(msg), qos=SENSOR_DATA if topic == "/camera/sensor" else RELIABLE)
                for topic, msg in expected.items()}
        child = subprocess.Popen([sys.executable, str(CHILD), str(domain), str(seed)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            got = {topic: sub.wait(TIMEOUT) for topic, sub in subs.items()}
            # What discovery announced for the child's writers: ROS 2 names and QoS on the wire.
            endpoints = {topic: [sub.reader.get_matched_publication_data(h)
                                 for h in sub.reader.get_matched_publications()] for topic, sub in subs.items()}
        finally:
            out, err = child.communicate("done\n", timeout=TIMEOUT)
    assert child.returncode == 0, err
    for topic, msg in expected.items():
        assert got[topic] is not None, f"nothing arrived on {topic} within {TIMEOUT} s"
        assert got[topic] == msg, topic  # every field, image bytes included
    np.testing.assert_array_equal(m.rgb_from_image(got["/camera/image_large"]),
                                  m.rgb_from_image(expected["/camera/image_large"]))
    assert m.rgb_from_image(got["/camera/image"]).shape == (128, 128, 3)

    (joint_writer,) = endpoints["/joint_states"]
    assert joint_writer.topic_name == "rt/joint_states"
    assert joint_writer.type_name == "sensor_msgs::msg::dds_::JointState_"
    assert "Reliable" in str(joint_writer.qos)
    (sensor_writer,) = endpoints["/camera/sensor"]
    assert sensor_writer.type_name == "sensor_msgs::msg::dds_::Image_"
    assert "BestEffort" in str(sensor_writer.qos)


def test_qos_matching_and_callbacks_in_one_process():
    """As in ROS 2: a reliable subscription ignores a best-effort publisher; a best-effort one takes a reliable one."""
    received = []
    with CycloneTransport(domain_id=free_domain()) as t:
        sensor_pub = t.publisher("/a", m.String, qos=SENSOR_DATA)
        reliable_sub = t.subscribe("/a", m.String)
        reliable_pub = t.publisher("/b", m.Bool)
        sensor_sub = t.subscribe("/b", m.Bool, callback=received.append, qos=SENSOR_DATA)
        deadline = time.monotonic() + TIMEOUT
        while sensor_sub.matched() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sensor_sub.matched() == 1 and reliable_pub.matched() == 1
        assert reliable_sub.matched() == 0 and sensor_pub.matched() == 0
        for value in (True, False, True):
            reliable_pub.publish(m.Bool(data=value))
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [b.data for b in received] == [True, False, True]
        assert sensor_sub.latest() == m.Bool(data=True)
        assert [b.data for b in sensor_sub.take()] == [True, False, True] and sensor_sub.take() == []
        with pytest.raises(TypeError, match="already used with String"):
            t.publisher("/a", m.Bool)
