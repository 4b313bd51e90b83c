"""A robot's bridge configuration: topics, cameras, joints, control rate, command mode and the safety limits.

One YAML file per robot (``configs/robots/twin.yaml``, ``twin_joint.yaml``, ``franka.yaml``), checked once at load
by a pydantic schema that refuses unknown keys (a misspelt key is an error, not a silent default) and embeds
``robots.safety.SafetyConfig``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from robots.safety import SafetyConfig


class Topics(BaseModel):
    """ROS 2 topic names. ``image`` holds ``{camera}``. The ``twin_*`` topics exist only on the digital twin."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str = Field("/camera/{camera}/image_raw", description="sensor_msgs/Image rgb8, one per camera")
    joint_states: str = Field("/joint_states", description="sensor_msgs/JointState, arm joints + fingers")
    pose: str = Field("/ee_pose", description="geometry_msgs/PoseStamped, the TCP in the base frame")
    instruction: str = Field("/instruction", description="std_msgs/String, the task in words")
    estop: str = Field("/estop", description="std_msgs/Bool, True: pressed (latches)")
    estop_reset: str = Field("/estop/reset", description="std_msgs/Bool, True: release a latched e-stop")
    heartbeat: str = Field("/deadman", description="std_msgs/Bool from an operator's enabling switch: True while "
                           "held (send at least every safety.deadman_s), False when let go; read only with deadman_s")
    twist: str = Field("/servo_node/delta_twist_cmds", description="geometry_msgs/TwistStamped out (MoveIt Servo)")
    joint_trajectory: str = Field("/joint_trajectory_controller/joint_trajectory",
                                  description="trajectory_msgs/JointTrajectory out (joint mode): one point, the arm "
                                              "joints' targets, time_from_start one control period")
    gripper: str = Field("/gripper_controller/joint_trajectory",
                         description="trajectory_msgs/JointTrajectory out: one point, each finger's opening (m)")
    twin_reset: str = Field("/twin/reset", description="std_msgs/String: a seed (new episode) or 'stop'")
    twin_success: str = Field("/twin/success", description="std_msgs/Bool, evaluation only")
    twin_done: str = Field("/twin/done", description="std_msgs/Bool, evaluation only")
    twin_expert_twist: str = Field("/twin/expert/twist", description="TwistStamped: the scripted expert's next act")
    twin_expert_gripper: str = Field("/twin/expert/gripper", description="JointTrajectory: the expert's fingers")
    twin_status: str = Field("/twin/status", description="std_msgs/String JSON: seed, steps, success, done, stamp")
    twin_cameras: str = Field("/twin/cameras", description="std_msgs/Bool: False stops the twin's images (faults)")

    def image_topic(self, camera: str) -> str:
        return self.image.format(camera=camera)


class RobotConfig(BaseModel):
    """One arm behind the bridge. Per control step the node sends the fingers' opening as a one-point JointTrajectory
    and, stamped with the same time, the arm's command: in ``twist`` mode a base-frame end-effector twist (MoveIt
    Servo); in ``joint_trajectory`` mode the arm joints' targets (ros2_control's joint_trajectory_controller),
    solved by differential IK (``robots.ik``) on the arm's ``description``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    command_mode: Literal["twist", "joint_trajectory"] = Field("twist", description="what the arm is sent")
    description: str | None = Field(None, description="joint_trajectory: the arm's MJCF/URDF for the IK (a relative "
                                                      "path is read from the config file's folder)")
    description_joints: list[str] | None = Field(None, description="the description's names of arm_joints, in "
                                                                   "order (None: the same names)")
    tcp_site: str = Field("tcp", description="joint_trajectory: the description's site at the tool centre point")
    control_hz: float = Field(20.0, gt=0, description="commands per second (the policy's training rate)")
    base_frame: str = Field("base", description="frame_id of poses and twists")
    cameras: list[str] = Field(min_length=1, description="the policy's cameras, in its order")
    image_size: int = Field(128, gt=0, description="square images, pixels a side")
    arm_joints: list[str] = Field(min_length=1, description="the arm's joints (must equal safety.joint_names)")
    finger_joints: list[str] = Field(min_length=1, description="finger joints, one opening each in the state")
    finger_open: float = Field(gt=0, description="a finger's opening when open, m (closed: 0)")
    pos_scale: float = Field(gt=0, description="m per control step at |action| = 1 (the policy's action units)")
    rot_scale: float = Field(gt=0, description="rad per control step at |action| = 1")
    lockstep: bool = Field(False, description="one command per new observation (a command-driven twin)")
    idle_republish_s: float = Field(0.2, gt=0, description="twin: republish the state after this long idle")
    topics: Topics = Field(default_factory=Topics)
    safety: SafetyConfig

    @property
    def dt(self) -> float:
        return 1.0 / self.control_hz

    @property
    def ik_joints(self) -> list[str]:
        """The arm joints' names in the description (``description_joints``, else ``arm_joints``)."""
        return self.description_joints or self.arm_joints

    @field_validator("description")
    @classmethod
    def _resolve(cls, value: str | None, info: ValidationInfo) -> str | None:
        """A relative path is read from the config file's folder (``load_robot_config`` passes it)."""
        base = (info.context or {}).get("config_dir")
        if value is None or base is None or Path(value).is_absolute():
            return value
        return str((Path(base) / value).resolve())

    @model_validator(mode="after")
    def _check(self) -> RobotConfig:
        s = self.safety
        if s.joint_names != self.arm_joints:
            raise ValueError(f"safety.joint_names {s.joint_names} must equal arm_joints {self.arm_joints}")
        if not set(self.finger_joints) <= set(s.ignored_joints):
            raise ValueError(f"finger_joints {self.finger_joints} must be in safety.ignored_joints")
        if s.cameras != self.cameras:
            raise ValueError(f"safety.cameras {s.cameras} must equal cameras {self.cameras}")
        if s.image_shape is not None and tuple(s.image_shape) != (self.image_size, self.image_size):
            raise ValueError(f"safety.image_shape {s.image_shape} must be ({self.image_size}, {self.image_size})")
        if abs(s.control_period_s - self.dt) > 1e-9:
            raise ValueError(f"safety.control_period_s {s.control_period_s} must be 1 / control_hz = {self.dt}")
        self._check_joint_mode()
        if self.idle_republish_s >= s.watchdog_s:
            raise ValueError(f"idle_republish_s {self.idle_republish_s} must be < safety.watchdog_s "
                             f"{s.watchdog_s}, or an idle twin trips the watchdog")
        return self

    def _check_joint_mode(self) -> None:
        if self.description_joints is not None and len(self.description_joints) != len(self.arm_joints):
            raise ValueError(f"description_joints {self.description_joints} must name each of arm_joints "
                             f"{self.arm_joints}, in order")
        if self.command_mode != "joint_trajectory":
            return
        if self.description is None:
            raise ValueError("command_mode joint_trajectory needs `description:`, the arm's MJCF or URDF for the IK "
                             "(e.g. robots/descriptions/panda.xml; a relative path is read from the config's folder)")
        if not Path(self.description).is_file():
            raise ValueError(f"description {self.description} is not a file (a relative path is read from the "
                             "config file's folder)")

    def with_image_size(self, size: int) -> RobotConfig:
        """The same robot with ``size`` px images (tests use small ones)."""
        data = self.model_dump()
        data["image_size"] = size
        data["safety"]["image_shape"] = (size, size)
        return RobotConfig.model_validate(data)


def load_robot_config(path: str | Path) -> RobotConfig:
    """Read and check a robot YAML; unknown or misspelt keys raise ``pydantic.ValidationError``. A relative
    ``description`` path is resolved against the file's folder."""
    with open(path) as f:
        data = yaml.safe_load(f)
    return RobotConfig.model_validate(data, context={"config_dir": str(Path(path).parent)})
