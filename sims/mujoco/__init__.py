"""The native MuJoCo backend: a Panda-kinematics arm in primitive geometry, fast to render on a CPU."""

import os

# Headless rendering by default: EGL (Mesa llvmpipe on a CPU, the GPU's driver on a server).
# Set MUJOCO_GL=osmesa to use OSMesa instead.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
