"""MJCF for a 7-DoF arm with the Franka Panda's kinematics and joint limits, in primitive geometry.

The body frames, joint axes and limits follow the Panda's published kinematics (the same chain as
mujoco_menagerie's ``franka_emika_panda``); the visuals are capsules and boxes so that software
rendering stays fast (a meshed Panda renders at ~19 frames/s on a 2-core CPU). Only the hand and the
fingers collide; the links carry gravity compensation and are driven by joint position servos.

The world: the table top is the plane z = 0, the arm's base stands at the origin facing +x.
"""

from __future__ import annotations

import numpy as np

# Panda joint limits (rad) and a home pose with the gripper pointing down, ~0.25 m above the table.
JOINT_LIMITS = np.array(
    [
        [-2.8973, 2.8973],
        [-1.7628, 1.7628],
        [-2.8973, 2.8973],
        [-3.0718, -0.0698],
        [-2.8973, 2.8973],
        [-0.0175, 3.7525],
        [-2.8973, 2.8973],
    ]
)
HOME_QPOS = np.array([0.0, 0.05, 0.0, -2.45, 0.0, 2.5, 0.785398])
FINGER_OPEN = 0.04  # m, each finger
ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("finger_joint1", "finger_joint2")
TCP_OFFSET = 0.1034  # m from the hand frame to the point between the fingertips


def _arm_xml() -> str:
    kp = [5000, 5000, 4000, 4000, 2000, 2000, 1000]
    kv = [120, 120, 80, 90, 30, 30, 15]  # near critical damping: the TCP covers ~90% of a step in 50 ms
    lim = JOINT_LIMITS
    j = [f'range="{lim[i, 0]} {lim[i, 1]}"' for i in range(7)]
    body = f"""
    <body name="link0" pos="0 0 0">
      <geom class="vis" type="cylinder" size="0.07 0.06" pos="0 0 0.06" material="white"/>
      <body name="link1" pos="0 0 0.333" gravcomp="1">
        <inertial pos="0 0 -0.1" mass="3" diaginertia="0.02 0.02 0.01"/>
        <joint name="joint1" {j[0]}/>
        <geom class="vis" type="capsule" fromto="0 0 -0.21 0 0 -0.03" size="0.06" material="white"/>
        <body name="link2" quat="1 -1 0 0" gravcomp="1">
          <inertial pos="0 -0.05 0" mass="3" diaginertia="0.02 0.02 0.01"/>
          <joint name="joint2" {j[1]}/>
          <geom class="vis" type="capsule" fromto="0 0 -0.06 0 0 0.06" size="0.06" material="white"/>
          <geom class="vis" type="capsule" fromto="0 0 0 0 -0.2 0" size="0.055" material="white"/>
          <body name="link3" pos="0 -0.316 0" quat="1 1 0 0" gravcomp="1">
            <inertial pos="0.04 0 -0.03" mass="2.5" diaginertia="0.015 0.015 0.008"/>
            <joint name="joint3" {j[2]}/>
            <geom class="vis" type="capsule" fromto="0 0 -0.12 0 0 0" size="0.055" material="white"/>
            <geom class="vis" type="capsule" fromto="0 0 0 0.0825 0 0" size="0.05" material="white"/>
            <body name="link4" pos="0.0825 0 0" quat="1 1 0 0" gravcomp="1">
              <inertial pos="-0.04 0.05 0" mass="2.5" diaginertia="0.015 0.015 0.008"/>
              <joint name="joint4" {j[3]}/>
              <geom class="vis" type="capsule" fromto="0 0 -0.05 0 0 0.05" size="0.055" material="dark"/>
              <geom class="vis" type="capsule" fromto="0 0 0 -0.0825 0.12 0" size="0.05" material="white"/>
              <body name="link5" pos="-0.0825 0.384 0" quat="1 -1 0 0" gravcomp="1">
                <inertial pos="0 0.04 -0.1" mass="2" diaginertia="0.01 0.01 0.005"/>
                <joint name="joint5" {j[4]}/>
                <geom class="vis" type="capsule" fromto="0 0 -0.24 0 0 -0.02" size="0.05" material="white"/>
                <body name="link6" quat="1 1 0 0" gravcomp="1">
                  <inertial pos="0.05 0 0" mass="1.5" diaginertia="0.005 0.005 0.004"/>
                  <joint name="joint6" {j[5]}/>
                  <geom class="vis" type="capsule" fromto="0 0 -0.04 0 0 0.02" size="0.045" material="white"/>
                  <geom class="vis" type="capsule" fromto="0 0 0 0.088 0 0" size="0.04" material="white"/>
                  <body name="link7" pos="0.088 0 0" quat="1 1 0 0" gravcomp="1">
                    <inertial pos="0 0 0.06" mass="0.8" diaginertia="0.003 0.003 0.002"/>
                    <joint name="joint7" {j[6]}/>
                    <geom class="vis" type="cylinder" fromto="0 0 -0.02 0 0 0.09" size="0.04" material="dark"/>
                    <body name="hand" pos="0 0 0.107" quat="0.9238795 0 0 -0.3826834" gravcomp="1">
                      <inertial pos="0 0 0.03" mass="0.7" diaginertia="0.002 0.0005 0.002"/>
                      <geom class="col" type="box" size="0.02 0.095 0.025" pos="0 0 0.03" material="white"/>
                      <site name="tcp" pos="0 0 {TCP_OFFSET}" size="0.005" rgba="1 0 0 0" group="4"/>
                      <camera name="wrist" pos="0.07 0 0.0" xyaxes="0 1 0 0.97 0 0.25" fovy="80"/>
                      <body name="left_finger" pos="0 0 0.0584" gravcomp="1">
                        <inertial pos="0 0.01 0.03" mass="0.05" diaginertia="1e-5 1e-5 1e-5"/>
                        <joint name="finger_joint1" type="slide" axis="0 1 0" range="0 {FINGER_OPEN}"
                               damping="5" armature="0.1"/>
                        <geom class="pad" type="box" size="0.01 0.006 0.025" pos="0 0.006 0.03"/>
                      </body>
                      <body name="right_finger" pos="0 0 0.0584" quat="0 0 0 1" gravcomp="1">
                        <inertial pos="0 0.01 0.03" mass="0.05" diaginertia="1e-5 1e-5 1e-5"/>
                        <joint name="finger_joint2" type="slide" axis="0 1 0" range="0 {FINGER_OPEN}"
                               damping="5" armature="0.1"/>
                        <geom class="pad" type="box" size="0.01 0.006 0.025" pos="0 0.006 0.03"/>
                      </body>
                    </body>
                  </body>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""
    actuators = "\n".join(
        f'    <general name="a{i + 1}" joint="joint{i + 1}" gainprm="{kp[i]}" '
        f'biastype="affine" biasprm="0 -{kp[i]} -{kv[i]}" ctrlrange="{lim[i, 0]} {lim[i, 1]}" '
        'forcerange="-150 150"/>'
        for i in range(7)
    )
    actuators += (
        '\n    <general name="finger1" joint="finger_joint1" gainprm="1000" biastype="affine" biasprm="0 -1000 -30" '
        f'ctrlrange="0 {FINGER_OPEN}" forcerange="-40 40"/>'
        '\n    <general name="finger2" joint="finger_joint2" gainprm="1000" biastype="affine" biasprm="0 -1000 -30" '
        f'ctrlrange="0 {FINGER_OPEN}" forcerange="-40 40"/>'
    )
    return body, actuators


def build_scene_xml(objects_xml: str = "", assets_xml: str = "", image_size: int = 128,
                    timestep: float = 0.005) -> str:
    """A full MJCF: table, lights, cameras, the arm, and the task's objects.

    Args:
        objects_xml: ``<body>`` elements placed in the worldbody (the task's objects).
        assets_xml: extra ``<material>`` elements.
        image_size: the offscreen buffer is sized for square images of this side.
        timestep: physics step (s); the controller runs at 20 Hz on top of it.
    """
    body, actuators = _arm_xml()
    size = max(image_size, 64)
    return f"""<mujoco model="vla_rl_arm">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="implicitfast" cone="elliptic" impratio="5"/>
  <visual>
    <global offwidth="{size}" offheight="{size}"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
    <map znear="0.01"/>
  </visual>
  <default>
    <joint axis="0 0 1" armature="0.1" damping="1"/>
    <default class="vis"><geom contype="0" conaffinity="0" group="1"/></default>
    <default class="col"><geom contype="1" conaffinity="1" group="1" friction="1 0.005 0.0001"/></default>
    <default class="pad"><geom contype="1" conaffinity="1" group="1" friction="2 0.01 0.001"
        condim="4" solref="0.01 1" material="dark" priority="1"/></default>
  </default>
  <asset>
    <material name="white" rgba="0.92 0.92 0.92 1"/>
    <material name="dark" rgba="0.25 0.25 0.28 1"/>
    <material name="table" rgba="0.62 0.52 0.40 1"/>
    <material name="floor" rgba="0.3 0.33 0.38 1"/>
    <material name="red" rgba="0.85 0.15 0.12 1"/>
    <material name="green" rgba="0.15 0.7 0.2 1"/>
    <material name="blue" rgba="0.15 0.3 0.85 1"/>
    <material name="yellow" rgba="0.95 0.8 0.1 1"/>
    <material name="wood" rgba="0.55 0.38 0.22 1"/>
{assets_xml}
  </asset>
  <worldbody>
    <light name="top" pos="0.5 0 1.5" dir="0 0 -1" diffuse="0.5 0.5 0.5" castshadow="false"/>
    <geom name="floor" type="plane" pos="0 0 -0.75" size="3 3 0.1" material="floor" contype="0" conaffinity="0"/>
    <geom name="table" type="box" pos="0.45 0 -0.025" size="0.55 0.6 0.025" material="table"
          contype="1" conaffinity="1" friction="1 0.005 0.0001"/>
    <camera name="agentview" pos="0.95 0 0.55" xyaxes="0 1 0 -0.707 0 0.707" fovy="55"/>
{body}
{objects_xml}
  </worldbody>
  <actuator>
{actuators}
  </actuator>
</mujoco>"""
