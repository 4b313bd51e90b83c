"""The bridge's IK (robots/ik.py) against the sim: the Panda description's forward kinematics equals the sim's TCP,
its joint targets equal the sim controller's for the same state and action, and driving the sim with them (the
twin's joint mode) moves it as the actions do. The robot configs of joint mode load and check their fields."""

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from robots.config import RobotConfig, load_robot_config
from robots.ik import ArmIK
from sims.mujoco.arm import ARM_JOINTS, FINGER_OPEN, HOME_QPOS, JOINT_LIMITS
from sims.mujoco.sim import POS_SCALE, ROT_SCALE, WORKSPACE, ArmSim
from vla_rl.envs import make_env
from vla_rl.splits import split_seeds

ROOT = Path(__file__).resolve().parents[2]
PANDA = ROOT / "robots" / "descriptions" / "panda.xml"
CONFIGS = ROOT / "configs" / "robots"


def panda_ik() -> ArmIK:
    return ArmIK(PANDA, ARM_JOINTS, pos_scale=POS_SCALE, rot_scale=ROT_SCALE, workspace_min=WORKSPACE[:, 0],
                 workspace_max=WORKSPACE[:, 1])


def opening(action: np.ndarray) -> float:
    return (1.0 - float(action[6])) * 0.5 * FINGER_OPEN


def test_description_fk_equals_the_sim_tcp():
    ik, sim, rng = panda_ik(), ArmSim(image_size=32), np.random.default_rng(0)
    for q in rng.uniform(JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1], (200, 7)):
        sim.reset_arm(q)
        pos, rot = ik.fk(q)
        np.testing.assert_allclose(pos, sim.tcp_pos(), atol=1e-6)
        np.testing.assert_allclose(rot, sim.tcp_rotmat(), atol=1e-6)
    np.testing.assert_array_equal(ik.params.joint_limits, JOINT_LIMITS)
    np.testing.assert_array_equal(ik.params.home, HOME_QPOS)


def test_ik_targets_equal_the_sim_controllers():
    """From the same joints and action, the node's IK and the sim's controller give the same targets, step after
    step (orientation target carried), on random actions from random postures."""
    ik, sim, rng = panda_ik(), ArmSim(image_size=32), np.random.default_rng(1)
    for _ in range(5):
        sim.reset_arm(HOME_QPOS + rng.uniform(-0.3, 0.3, 7))
        ik.reset()
        for a in rng.uniform(-1, 1, (20, 7)).astype(np.float32):
            sim.forward()  # after mj_step the sim's kinematics lag its joints by one substep; compare on fresh ones
            q_node = ik.step(sim.arm_qpos(), a)
            q_sim = sim.ik_target(a)
            np.testing.assert_allclose(q_node, q_sim, atol=1e-9)
            np.testing.assert_allclose(ik.target_rot, sim.target_rot, atol=1e-9)
            sim.apply_joint_targets(q_sim, opening(a))


def test_ik_clips_to_the_joint_limits_and_the_workspace():
    ik = panda_ik()
    q = JOINT_LIMITS[:, 1] - 1e-3  # every joint next to its upper limit
    for a in np.eye(7, dtype=np.float32)[:6]:
        for sign in (1, -1):
            target = ik.step(q, sign * a)
            assert np.all(target >= JOINT_LIMITS[:, 0]) and np.all(target <= JOINT_LIMITS[:, 1])
    ik.reset()
    home_pos, _ = ik.fk(HOME_QPOS)
    q, a = HOME_QPOS.copy(), np.array([0, 0, -1, 0, 0, 0, 0], np.float32)  # straight down into the table
    for _ in range(40):
        q = ik.step(q, a)
    z = ik.fk(q)[0][2]
    assert home_pos[2] > 0.15 and z == pytest.approx(WORKSPACE[2, 0], abs=2e-3)  # stopped at the box's floor


@pytest.mark.parametrize("task", ["mujoco/Reach-v1", "mujoco/PickCube-v1"])
def test_joint_targets_move_the_sim_as_the_actions_do(task):
    """The expert's episode run by actions (the sim's controller) and by the IK's joint targets from the measured
    joints (the twin's joint mode, `ArmEnv.step_joint_targets`): the same outcome at the same step, the TCP within
    a millimetre (the sim's controller reads kinematics one physics substep old)."""
    ik = panda_ik()
    for seed in split_seeds("test", 3):
        ends = []
        for joint_mode in (False, True):
            env = make_env(task, image_size=32)
            env.reset(seed=seed)
            ik.reset()
            done = False
            while not done:
                a = env.expert_action()
                if joint_mode:
                    out = env.step_joint_targets(ik.step(env.sim.arm_qpos(), a), opening(a), render=False)
                else:
                    out = env.step_chunk(a[None], render=False)
                done = out[2] or out[3]
            ends.append((out[4]["success"], env.elapsed, env.sim.tcp_pos()))
            env.close()
        (ok_a, steps_a, tcp_a), (ok_j, steps_j, tcp_j) = ends
        assert ok_a and ok_j and steps_a == steps_j, (seed, ends)
        np.testing.assert_allclose(tcp_j, tcp_a, atol=1e-3)


def test_step_joint_targets_refuses_bad_targets():
    env = make_env("mujoco/Reach-v1", image_size=32)
    env.reset(seed=0)
    for bad in (np.zeros(6), np.full(7, np.nan)):
        with pytest.raises(ValueError, match="7 finite numbers"):
            env.step_joint_targets(bad, 0.04)
    env.close()


def test_description_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="description"):
        ArmIK(tmp_path / "missing.xml", ARM_JOINTS, pos_scale=0.02, rot_scale=0.1, workspace_min=(0, 0, 0),
              workspace_max=(1, 1, 1))
    with pytest.raises(ValueError, match="description_joints"):
        ArmIK(PANDA, [f"panda_joint{i}" for i in range(1, 8)], pos_scale=0.02, rot_scale=0.1,
              workspace_min=(0, 0, 0), workspace_max=(1, 1, 1))
    with pytest.raises(ValueError, match="no site 'flange'"):
        ArmIK(PANDA, ARM_JOINTS, "flange", pos_scale=0.02, rot_scale=0.1, workspace_min=(0, 0, 0),
              workspace_max=(1, 1, 1))


# ---- configs -------------------------------------------------------------------------------------------------


def test_twin_joint_config_loads_with_its_description_resolved():
    cfg = load_robot_config(CONFIGS / "twin_joint.yaml")
    twist = load_robot_config(CONFIGS / "twin.yaml")
    assert cfg.command_mode == "joint_trajectory" and Path(cfg.description) == PANDA.resolve()
    assert cfg.safety == twist.safety and cfg.arm_joints == twist.arm_joints  # the same limits as twist mode
    assert cfg.with_image_size(32).description == cfg.description


def test_franka_config_is_valid_and_its_ik_maps_its_joint_names():
    cfg = load_robot_config(CONFIGS / "franka.yaml")
    assert cfg.command_mode == "joint_trajectory" and not cfg.lockstep and cfg.safety.watchdog_s == 0.1
    assert cfg.arm_joints == [f"panda_joint{i}" for i in range(1, 8)] == cfg.safety.joint_names
    assert cfg.finger_joints == ["panda_finger_joint1", "panda_finger_joint2"]
    assert cfg.base_frame == "panda_link0" and cfg.topics.joint_trajectory == "/panda_arm_controller/joint_trajectory"
    np.testing.assert_array_equal(np.array([cfg.safety.position_lower, cfg.safety.position_upper]).T, JOINT_LIMITS)
    ik = ArmIK.from_config(cfg)
    assert ik.joints == tuple(ARM_JOINTS)
    pos, _ = ik.fk(HOME_QPOS)
    lo, hi = np.array(cfg.safety.workspace_min), np.array(cfg.safety.workspace_max)
    assert np.all(pos >= lo) and np.all(pos <= hi)  # the home posture lies inside the workspace box


def test_joint_mode_config_errors(tmp_path):
    data = load_robot_config(CONFIGS / "twin_joint.yaml").model_dump()
    with pytest.raises(ValidationError, match="needs `description:`"):
        RobotConfig.model_validate({**data, "description": None})
    with pytest.raises(ValidationError, match="is not a file"):
        RobotConfig.model_validate({**data, "description": str(tmp_path / "nope.xml")})
    with pytest.raises(ValidationError, match="description_joints"):
        RobotConfig.model_validate({**data, "description_joints": ["joint1"]})
    text = (CONFIGS / "twin_joint.yaml").read_text()
    (tmp_path / "bad.yaml").write_text(text.replace("tcp_site:", "tcp:"))
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        load_robot_config(tmp_path / "bad.yaml")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "moved.yaml").write_text(text)  # the relative description no longer resolves from there
    with pytest.raises(ValidationError, match="is not a file"):
        load_robot_config(tmp_path / "sub" / "moved.yaml")
