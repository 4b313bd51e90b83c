"""launch/: the Cyclone XML for a real network (parsed by Cyclone itself, and with the loopback edits carrying two
480x640 images between two processes through CYCLONEDDS_URI), and the ROS 2 launch file and params file checked
against the deploy command's config without ROS (the ``launch`` packages are imported only when ROS launches it)."""

import ast
import importlib.util
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("cyclonedds", reason="the ros2 extra is not installed: pip install -e '.[ros2]'")

from robots.config import Topics  # noqa: E402
from robots.ros2.transport import free_domain, loopback_config  # noqa: E402
from vla_rl.cli import DeployConfig, parse_args  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
LAUNCH = ROOT / "launch"
NS = {"c": "https://cdds.io/config"}
ET.register_namespace("", NS["c"])  # written back with a default namespace, as Cyclone reads it (not ns0: prefixes)
TIMEOUT = 60.0  # seconds for both children; a healthy run takes ~3 s on 2 cores


def _launch_module():
    spec = importlib.util.spec_from_file_location("deploy_launch", LAUNCH / "deploy.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- cyclonedds.xml ----------------------------------------------------------------------------------------------


def loopback_variant(xml: str) -> ET.Element:
    """launch/cyclonedds.xml with the three edits that keep it on this host: interface lo, no multicast, the
    local host as the discovery peer."""
    root = ET.fromstring(xml)
    general = root.find("c:Domain/c:General", NS)
    nic = general.find("c:Interfaces/c:NetworkInterface", NS)
    nic.attrib.clear()
    nic.set("name", "lo")
    general.find("c:AllowMulticast", NS).text = "false"
    peers = ET.SubElement(root.find("c:Domain/c:Discovery", NS), f"{{{NS['c']}}}Peers")
    ET.SubElement(peers, f"{{{NS['c']}}}Peer", address="127.0.0.1")
    return root


def canonical(e: ET.Element) -> tuple:
    return e.tag, sorted(e.attrib.items()), (e.text or "").strip(), [canonical(c) for c in e]


def test_the_network_xml_with_the_loopback_edits_is_loopback_config():
    """The deploy XML and the tests' loopback configuration share their values (message and fragment size,
    receive buffer, participant indices); only the three loopback edits separate them."""
    xml = (LAUNCH / "cyclonedds.xml").read_text()
    real = ET.fromstring(xml)
    assert real.find("c:Domain/c:General/c:Interfaces/c:NetworkInterface", NS).get("name") != "lo"
    assert canonical(loopback_variant(xml)) == canonical(ET.fromstring(loopback_config()))


CHILD = """
import sys, time
import numpy as np
from robots.ros2 import messages as m
from robots.ros2.transport import RELIABLE, make_transport

role, domain = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(5)
images = [m.image_from_rgb(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), t=i + 1.0) for i in range(2)]
with make_transport("cyclone", domain) as t:
    assert t._domain is None, "CYCLONEDDS_URI was not taken"  # no loopback_config() Domain object
    if role == "pub":
        pub = t.publisher("/camera/scene/image_raw", m.Image, RELIABLE)
        deadline = time.monotonic() + 50
        while not pub.matched() and time.monotonic() < deadline:
            time.sleep(0.01)
        for img in images:
            pub.publish(img)
        sys.stdin.readline()  # keep the writer (and its resends) alive until the reader is done
    else:
        sub = t.subscribe("/camera/scene/image_raw", m.Image, qos=RELIABLE)
        got = [sub.wait(50) for _ in images]
        print(sum(g is not None and g == img for g, img in zip(got, images)))
"""


def _child(role: str, domain: int, config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CYCLONEDDS_URI": config.as_uri()}
    return subprocess.Popen([sys.executable, "-c", CHILD, role, str(domain)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_pass_large_images_with_the_xml_through_cyclonedds_uri(tmp_path):
    config = tmp_path / "cyclonedds_lo.xml"
    config.write_bytes(ET.tostring(loopback_variant((LAUNCH / "cyclonedds.xml").read_text())))
    domain, t0 = free_domain(), time.monotonic()
    sub = _child("sub", domain, config)
    pub = _child("pub", domain, config)
    try:
        out, err = sub.communicate(timeout=TIMEOUT)
    finally:
        pub_out, pub_err = pub.communicate("done\n", timeout=TIMEOUT)
    assert sub.returncode == 0, err
    assert pub.returncode == 0, pub_err
    assert out.strip() == "2", f"{out.strip()} of 2 images arrived equal in {time.monotonic() - t0:.1f} s"


def test_cyclone_reads_the_xml_from_cyclonedds_uri(tmp_path):
    """A configuration Cyclone cannot apply (an interface this host lacks) fails the participant: the file is read."""
    bad = loopback_variant((LAUNCH / "cyclonedds.xml").read_text())
    bad.find("c:Domain/c:General/c:Interfaces/c:NetworkInterface", NS).set("name", "no-such-nic0")
    config = tmp_path / "bad.xml"
    config.write_bytes(ET.tostring(bad))
    child = _child("sub", free_domain(), config)
    _, err = child.communicate(timeout=TIMEOUT)
    assert child.returncode != 0 and "DDS_RETCODE_ERROR" in err


# ---- deploy.launch.py and params.yaml ------------------------------------------------------------------------------


def test_params_file_keys_are_deploy_flags():
    launch = _launch_module()
    params = launch.read_params(LAUNCH / "params.yaml")
    assert set(params) <= set(DeployConfig.model_fields), set(params) - set(DeployConfig.model_fields)
    assert {"policy", "robot", "transport", "domain"} <= set(params)
    commented = {line.split(":")[0].strip("# ") for line in (LAUNCH / "params.yaml").read_text().splitlines()
                 if line.strip().startswith("# ") and ":" in line and line.split(":")[0].strip("# ").isidentifier()}
    assert commented - {"image_size", "n_action_steps", "max_s"} == set()  # the optional keys shown commented out


def test_launch_arguments_map_to_deploy_flags():
    launch = _launch_module()
    keys = {key for key, _ in launch.ARGUMENTS.values()}
    assert keys <= set(DeployConfig.model_fields), keys - set(DeployConfig.model_fields)
    assert Topics().instruction == launch.DEFAULT_INSTRUCTION_TOPIC


def test_the_launch_command_parses_as_the_deploy_config_it_means():
    launch = _launch_module()
    params = launch.read_params(LAUNCH / "params.yaml")
    args = {"checkpoint": "runs/sft/final", "image_size": "224", "domain": "7", "transport": "rclpy", "max_s": "",
            "robot": ""}
    settings = launch.deploy_settings(args, params)
    cmd = launch.deploy_command(settings, "vla-rl")
    assert cmd[:2] == ["vla-rl", "deploy"]
    cfg = parse_args(DeployConfig, cmd[2:], "deploy")  # a renamed flag fails here: unknown config key
    assert (cfg.policy, cfg.image_size, cfg.domain, cfg.transport, cfg.robot, cfg.max_s) == (
        "runs/sft/final", 224, 7, "rclpy", params["robot"], None)
    env = launch.process_env(settings, "launch/cyclonedds.xml", "rmw_cyclonedds_cpp")
    assert env == {"CYCLONEDDS_URI": (LAUNCH / "cyclonedds.xml").as_uri(), "RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp",
                   "ROS_DOMAIN_ID": "7"}
    with pytest.raises(ValueError, match="no checkpoint"):
        launch.deploy_settings({}, {**params, "policy": ""})


def test_instruction_is_published_on_the_robot_configs_topic():
    launch = _launch_module()
    assert launch.instruction_topic("configs/robots/twin.yaml") == Topics().instruction
    cmd = launch.instruction_command('say "hi"', "/instruction")
    assert cmd[:3] == ["ros2", "topic", "pub"] and cmd[-3:-1] == ["/instruction", "std_msgs/msg/String"]
    assert cmd[-1] == '{"data": "say \\"hi\\""}'


def test_launch_configurations_used_are_declared():
    """generate_launch_description cannot run here; its source can be read: every launch argument read with
    LaunchConfiguration(...) or get(...) is declared, by DeclareLaunchArgument or in ARGUMENTS."""
    launch = _launch_module()
    tree = ast.parse((LAUNCH / "deploy.launch.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]

    def first_strings(name: str) -> set[str]:
        return {c.args[0].value for c in calls if c.func.id == name and c.args
                and isinstance(c.args[0], ast.Constant) and isinstance(c.args[0].value, str)}

    declared = first_strings("DeclareLaunchArgument") | set(launch.ARGUMENTS)
    used = first_strings("LaunchConfiguration") | first_strings("get")
    assert used, "no launch arguments read"
    assert used <= declared, used - declared
    assert {"instruction", "params_file", "cyclonedds_config", "rmw", "vla_rl"} <= declared
