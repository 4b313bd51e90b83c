"""Point SAPIEN at the Vulkan driver that `setup_vulkan.sh` unpacked (Mesa lavapipe, a CPU driver), before sapien is
imported.

SAPIEN 3 needs Vulkan even for state observations. The driver lives in ``<venv>/vulkan`` (``make
install-maniskill``), not in the system's library path, so `use_local_vulkan` sets what the Vulkan loader reads
(``VK_ICD_FILENAMES``, ``VK_DRIVER_FILES``), tells SAPIEN which ``libvulkan.so.1`` to load
(``SAPIEN_VULKAN_LIBRARY_PATH``), and loads the driver's newer dependencies (libdrm, LLVM) into the process first:
the dynamic linker reads ``LD_LIBRARY_PATH`` once at start-up, so setting it here would not reach the driver's own
``dlopen``, while an already loaded soname is reused.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

VULKAN_DIR_ENV = "VLA_RL_VULKAN_DIR"  # overrides where the driver folder is looked for
_PRELOAD = ("libLLVM-15.so.1", "libdrm.so.2", "libdrm_amdgpu.so.1")
_done = False


class VulkanMissing(RuntimeError):
    """No Vulkan driver for SAPIEN was found."""


def vulkan_dir() -> Path:
    """The folder `setup_vulkan.sh` fills: ``$VLA_RL_VULKAN_DIR`` or ``<sys.prefix>/vulkan``."""
    return Path(os.environ.get(VULKAN_DIR_ENV) or Path(sys.prefix) / "vulkan")


def vulkan_ready() -> bool:
    """True when the driver folder is complete (what the tests skip on)."""
    return (vulkan_dir() / ".complete").is_file()


def use_local_vulkan() -> Path:
    """Set up this process to use the unpacked lavapipe driver; returns its folder. Idempotent; call it before the
    first ``import sapien``.

    Raises:
        VulkanMissing: the folder is absent or incomplete, naming the command that fills it.
    """
    global _done
    root = vulkan_dir()
    if _done:
        return root
    if not vulkan_ready():
        raise VulkanMissing(f"no Vulkan driver in {root}: ManiSkill3 / SAPIEN 3 need one even without cameras; run "
                            "`make install-maniskill` (it unpacks Mesa lavapipe there), or set "
                            f"{VULKAN_DIR_ENV} to a folder that sims/maniskill/setup_vulkan.sh filled")
    if "sapien" in sys.modules:
        raise RuntimeError("sapien was imported before use_local_vulkan(): import sims.maniskill.env first")
    lib = root / "lib"
    icd = str(root / "lvp_icd.json")
    os.environ["VK_ICD_FILENAMES"] = icd
    os.environ["VK_DRIVER_FILES"] = icd
    os.environ["SAPIEN_VULKAN_LIBRARY_PATH"] = str(lib / "libvulkan.so.1")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib), os.environ.get("LD_LIBRARY_PATH")) if p)
    for name in _PRELOAD:
        ctypes.CDLL(str(lib / name), mode=ctypes.RTLD_GLOBAL)
    _done = True
    return root
