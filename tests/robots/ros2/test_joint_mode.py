"""The bridge in joint_trajectory mode over real DDS: the node solves the arm's joint targets by IK on the arm's
description and sends them through the safety layer as a JointTrajectory; the twin drives its servos to them. The
scripted expert succeeds through it, every command sent respects the joint limits, and an IK target outside them is
clamped. The twin runs as a child process (``vla-rl twin --robot configs/robots/twin_joint.yaml``); see test_bridge.
"""

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cyclonedds")

import mujoco  # noqa: E402

from robots.config import RobotConfig, load_robot_config  # noqa: E402
from robots.ik import ArmIK  # noqa: E402
from robots.ros2 import messages as m  # noqa: E402
from robots.ros2.node import JointCommand, PolicyNode  # noqa: E402
from robots.ros2.transport import RELIABLE, SENSOR_DATA, CycloneTransport, free_domain  # noqa: E402
from robots.ros2.twin import run_episode, twin_bridge  # noqa: E402
from sims.mujoco.arm import HOME_QPOS  # noqa: E402
from vla_rl.envs import make_env  # noqa: E402
from vla_rl.splits import split_seeds  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
CONFIG = ROOT / "configs" / "robots" / "twin_joint.yaml"
SMALL = 32  # px: the tests' images


def small_config(**update) -> RobotConfig:
    cfg = load_robot_config(CONFIG).with_image_size(SMALL)
    return cfg.model_copy(update=update) if update else cfg


def check_limits(cfg: RobotConfig, commands: list[JointCommand]) -> None:
    """Every command within the position limits, and within the velocity limit of the time since the one before."""
    s = cfg.safety
    lo, hi, vmax = np.array(s.position_lower), np.array(s.position_upper), np.array(s.max_velocity)
    for prev, c in zip([None, *commands[:-1]], commands, strict=True):
        sent, ref = np.array(c.sent), np.array(c.reference)
        assert np.all(sent >= lo) and np.all(sent <= hi), c
        assert c.dt <= s.control_period_s + 1e-12, c
        assert np.all(np.abs(sent - ref) <= vmax * c.dt + 1e-9), c
        if prev is not None and np.array_equal(ref, prev.sent):  # measured from the last command sent
            assert c.dt <= c.now - prev.now + 1e-9, (prev, c)


def expert_steps(task: str, seed: int) -> int:
    """The steps the scripted expert takes in the env itself (actions through the sim's own controller)."""
    env = make_env(task, image_size=SMALL)
    env.reset(seed=seed)
    done = False
    while not done:
        *_, terminated, truncated, _ = env.step_chunk(env.expert_action()[None], render=False)
        done = terminated or truncated
    env.close()
    return env.elapsed


@pytest.mark.parametrize("task", ["mujoco/Reach-v1", "mujoco/PickCube-v1"])
def test_expert_succeeds_through_the_bridge_in_joint_mode(task):
    """The expert's actions go through the node's IK and the twin's servos: it succeeds, in as many steps as in the
    env itself unless a hold intervened, and no command needed clamping (the twin moved as the IK asked)."""
    cfg = small_config()
    seeds = split_seeds("test", 3)
    with twin_bridge(task, CONFIG, cfg, max_s=240) as (node, client, _):
        results = [run_episode(node, client, seed, max_s=60) for seed in seeds]
    assert all(r["success"] for r in results), (results, node.decisions)
    assert all(isinstance(c, JointCommand) for c in node.sent) and len(node.sent) == sum(r["commands"] for r in results)
    check_limits(cfg, node.sent)
    assert all(c.sent == c.asked for c in node.sent), node.decisions
    if not any("HOLD" in d for d in node.decisions):  # a hold (a starved machine can trip the watchdog) re-anchors
        assert [r["steps"] for r in results] == [expert_steps(task, seed) for seed in seeds], results


class Constant:
    """An action source that always asks for ``action`` (7,)."""

    def __init__(self, action: list[float]):
        self.action = np.asarray(action, dtype=np.float32)

    def reset(self) -> None:
        pass

    def __call__(self, obs, instruction, stamp):
        return self.action[None]


class ArmInputs:
    """A motionless arm's inputs on a transport: images, joint states (arm at ``q``, fingers open) and the TCP pose
    from the description's FK, all stamped now."""

    def __init__(self, cfg: RobotConfig, t: CycloneTransport, q: np.ndarray):
        tp, self.cfg, self.q = cfg.topics, cfg, q
        self.images = {c: t.publisher(tp.image_topic(c), m.Image, SENSOR_DATA) for c in cfg.cameras}
        self.joints = t.publisher(tp.joint_states, m.JointState, SENSOR_DATA)
        self.pose = t.publisher(tp.pose, m.PoseStamped, SENSOR_DATA)
        pos, rot = ArmIK.from_config(cfg).fk(q)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, rot.ravel())
        self.tcp = m.Pose(position=m.Point(*pos), orientation=m.Quaternion(x=quat[1], y=quat[2], z=quat[3], w=quat[0]))

    def publish(self) -> None:
        now, c = time.time(), self.cfg
        header = m.Header(stamp=m.stamp(now), frame_id=c.base_frame)
        for cam, pub in self.images.items():
            pub.publish(m.image_from_rgb(np.zeros((SMALL, SMALL, 3), np.uint8), now, f"{cam}_optical_frame"))
        self.joints.publish(m.JointState(header=header, name=c.arm_joints + c.finger_joints,
                                         position=[*map(float, self.q), c.finger_open, c.finger_open]))
        self.pose.publish(m.PoseStamped(header=header, pose=self.tcp))


def test_ik_targets_outside_the_limits_are_clamped_never_sent_raw():
    """With joint1 capped at its home angle and slow joints, an action to +y makes the IK ask past both limits: what
    goes out on the arm's topic is the safety layer's clamped targets, stamped like the fingers; on hold, nothing."""
    data = small_config(lockstep=False).model_dump()
    data["safety"]["position_upper"][0] = float(HOME_QPOS[0])  # joint1 may not turn towards +y
    data["safety"]["max_velocity"] = [0.2] * 7  # 0.01 rad in a 0.05 s period
    cfg = RobotConfig.model_validate(data)
    with CycloneTransport(domain_id=free_domain()) as t:
        node = PolicyNode(cfg, t, Constant([0, 1, 0, 0, 0, 1, 1]))
        arm = t.subscribe(cfg.topics.joint_trajectory, m.JointTrajectory, qos=RELIABLE)
        fingers = t.subscribe(cfg.topics.gripper, m.JointTrajectory, qos=RELIABLE)
        inputs = ArmInputs(cfg, t, HOME_QPOS)
        deadline = time.monotonic() + 30
        while len(node.sent) < 4 and time.monotonic() < deadline:
            inputs.publish()
            node.wait_for_new_input(0.5)
            time.sleep(0.02)  # the other topics of this observation land
            node.step()
        time.sleep(cfg.safety.watchdog_s + 0.05)  # inputs stop: the watchdog holds and nothing goes out
        held = node.step()
        time.sleep(0.2)
        heard, heard_fingers = arm.take(), fingers.take()
    assert held is not None and held.hold and any(r.startswith("watchdog") for r in held.reasons), held
    sent = node.sent
    assert len(sent) >= 4 and all(c.asked[0] > HOME_QPOS[0] and c.sent[0] <= HOME_QPOS[0] for c in sent), sent
    assert all(np.any(np.abs(np.array(c.asked) - c.reference) > 0.2 * c.dt) for c in sent)  # past the speed limit
    check_limits(cfg, sent)
    assert [list(msg.points[0].positions) for msg in heard] == [list(c.sent) for c in sent]
    assert all(list(msg.joint_names) == cfg.arm_joints and msg.points[0].time_from_start == m.Duration(0, 50_000_000)
               for msg in heard)
    assert [msg.header.stamp for msg in heard_fingers] == [msg.header.stamp for msg in heard]
    assert all(list(msg.points[0].positions) == [0.0, 0.0] for msg in heard_fingers)  # gripper +1: closed


def test_a_nan_gripper_action_holds_in_joint_mode():
    """A finite arm action with a NaN gripper: the IK's joint targets are fine, but the command goes out with the
    fingers, so the safety layer holds and nothing is sent on either topic."""
    cfg = small_config(lockstep=False)
    with CycloneTransport(domain_id=free_domain()) as t:
        node = PolicyNode(cfg, t, Constant([0.2, 0, 0, 0, 0, 0, float("nan")]))
        inputs = ArmInputs(cfg, t, HOME_QPOS)
        decisions = []
        deadline = time.monotonic() + 30
        while len(decisions) < 3 and time.monotonic() < deadline:
            inputs.publish()
            node.wait_for_new_input(0.5)
            time.sleep(0.02)
            d = node.step()
            if d is not None:
                decisions.append(d)
    assert len(decisions) == 3 and all(d.hold for d in decisions), decisions
    assert all(any("gripper" in r for r in d.reasons) for d in decisions), decisions
    assert node.sent == []
