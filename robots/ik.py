"""Differential IK on a robot's kinematic description, for the ROS 2 bridge's joint_trajectory mode.

`ArmIK` loads an arm's description with MuJoCo (MJCF or URDF, `mujoco.MjModel.from_xml_path`) and turns the
measured arm joint positions and a policy action into joint position targets by the sim's own controller
(`sims.mujoco.ik.ik_step`), so an action moves a joint_trajectory robot as it moves the sim. It carries that
controller's one piece of state, the orientation target, between steps.

The description needs the arm's joints (hinge or slide, one dof each) and a site at the TCP. MuJoCo drops sites
and merges fixed links when it reads a URDF, so a URDF needs a ``<mujoco>`` compiler block keeping the TCP link
(``fusestatic="false"``) and an MJCF wrapper adding the site; the simplest is an MJCF such as
``robots/descriptions/panda.xml``. The null-space pull goes to the description's ``home`` keyframe (else the middle
of each joint's range).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import mujoco
import numpy as np

from sims.mujoco.ik import IKParams, ik_step, site_jacobian

if TYPE_CHECKING:
    from robots.config import RobotConfig


class ArmIK:
    """One arm's differential IK.

    Args:
        description: path of the MJCF or URDF file.
        joints: the description's names of the arm joints, in command order (n).
        tcp_site: the description's site at the tool centre point.
        pos_scale, rot_scale: the action's units, m and rad per step at |action| = 1.
        workspace_min, workspace_max: the TCP box (m, base frame) the position target is clipped to.
    """

    def __init__(self, description: str | Path, joints: Sequence[str], tcp_site: str = "tcp", *, pos_scale: float,
                 rot_scale: float, workspace_min: Sequence[float], workspace_max: Sequence[float]) -> None:
        path = Path(description)
        if not path.is_file():
            raise FileNotFoundError(f"arm description {path} does not exist (robot config `description:`)")
        self.model = mujoco.MjModel.from_xml_path(str(path))
        self.data = mujoco.MjData(self.model)
        self.joints = tuple(joints)
        ids = [self._joint_id(name) for name in self.joints]
        self._qadr = self.model.jnt_qposadr[ids]
        self._dadr = self.model.jnt_dofadr[ids]
        self._site = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_SITE, tcp_site)
        if self._site < 0:
            raise ValueError(f"{path} has no site {tcp_site!r} (robot config `tcp_site:`); its sites: "
                             f"{self._names('site')}")
        limits = np.where(self.model.jnt_limited[ids, None], self.model.jnt_range[ids], [-np.inf, np.inf])
        self.params = IKParams(pos_scale=pos_scale, rot_scale=rot_scale,
                               workspace=np.array([workspace_min, workspace_max], dtype=np.float64).T,
                               joint_limits=limits, home=self._home(limits))
        self.target_rot: np.ndarray | None = None  # None: anchored at the measured orientation on the next solve

    @classmethod
    def from_config(cls, cfg: RobotConfig) -> ArmIK:
        """The IK of a joint_trajectory robot config: its description, joints (``description_joints``), TCP site,
        action units and workspace box."""
        if cfg.description is None:
            raise ValueError(f"robot {cfg.name!r} has no `description:` for the IK")
        s = cfg.safety
        return cls(cfg.description, cfg.ik_joints, cfg.tcp_site, pos_scale=cfg.pos_scale, rot_scale=cfg.rot_scale,
                   workspace_min=s.workspace_min, workspace_max=s.workspace_max)

    def _names(self, kind: str) -> list[str]:
        count = {"joint": self.model.njnt, "site": self.model.nsite}[kind]
        return [getattr(self.model, kind)(i).name for i in range(count)]

    def _joint_id(self, name: str) -> int:
        jid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0:
            raise ValueError(f"the description has no joint {name!r} (map the config's arm_joints onto its names "
                             f"with `description_joints:`); joints: {self._names('joint')}")
        if self.model.jnt_type[jid] not in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
            raise ValueError(f"joint {name!r} is not a hinge or slide joint")
        return jid

    def _home(self, limits: np.ndarray) -> np.ndarray:
        key = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_KEY, "home")
        if key >= 0:
            return self.model.key_qpos[key][self._qadr].copy()
        return np.where(np.isfinite(limits).all(axis=1), limits.mean(axis=1), 0.0)

    def _kinematics(self, q: np.ndarray) -> None:
        self.data.qpos[self._qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def fk(self, q: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """The TCP's position (3,) m and rotation matrix (3, 3) in the description's base frame at ``q`` (n,) rad."""
        self._kinematics(np.asarray(q, dtype=np.float64))
        return self.data.site_xpos[self._site].copy(), self.data.site_xmat[self._site].reshape(3, 3).copy()

    def solve(self, q: Sequence[float], action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(joint targets (n,) rad, the orientation target after this step (3, 3)) for ``action`` (7,) from the
        measured joints ``q`` (n,) rad. Changes nothing: `commit` the orientation target once the targets are sent."""
        q = np.asarray(q, dtype=np.float64)
        pos, rot = self.fk(q)
        jac = site_jacobian(self.model, self.data, self._site, self._dadr)
        target_rot = rot if self.target_rot is None else self.target_rot
        return ik_step(action, pos, rot, jac, q, target_rot, self.params)

    def commit(self, target_rot: np.ndarray) -> None:
        """Carry ``target_rot`` (3, 3), the orientation target of the step sent, to the next step."""
        self.target_rot = target_rot

    def step(self, q: Sequence[float], action: np.ndarray) -> np.ndarray:
        """`solve` and `commit`: the joint targets (n,) rad, as the sim's controller runs a step."""
        target, target_rot = self.solve(q, action)
        self.commit(target_rot)
        return target

    def reset(self) -> None:
        """Forget the orientation target (a new episode, or a hold after which the arm may have moved): the next
        solve anchors it at the measured orientation, as the sim does at reset."""
        self.target_rot = None
