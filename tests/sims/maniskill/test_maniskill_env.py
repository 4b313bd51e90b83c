"""The ManiSkill3 backend's cases (`maniskill_cases.py`: the env, vector env and expert; `batched_cases.py`: the
GPU-batched vector env; `pipeline_cases.py`: collect -> SFT -> GRPO through the CLI), each file run by pytest in an
interpreter of its own (a case may skip only for want of a GPU).

SAPIEN's lavapipe driver brings a newer libdrm than the system Mesa that MuJoCo's EGL renderer loads; once a process
has rendered MuJoCo through EGL, creating the Vulkan instance aborts it (measured: test_mujoco_env.py then these
cases in one process -> "Fatal Python error: Aborted"). Our vector-env workers are fresh processes, so training is
unaffected; the test suite, one process, runs these cases in a child.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vla_rl.availability import is_available

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.skipif(not (is_available("mani_skill") and is_available("sapien")),
                    reason="the maniskill extra is not installed (make install-maniskill)")
@pytest.mark.parametrize("cases", ["maniskill_cases.py", "pipeline_cases.py", "batched_cases.py"])
def test_maniskill_cases_in_their_own_interpreter(cases: str) -> None:
    from sims.maniskill.vulkan import vulkan_dir, vulkan_ready

    if not vulkan_ready():
        pytest.skip(f"no Vulkan driver in {vulkan_dir()} (make install-maniskill)")
    path = str(Path(__file__).with_name(cases))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", path], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=420)
    tail = (run.stdout + run.stderr)[-4000:]
    skips = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert run.returncode == 0 and " passed" in run.stdout, tail
    assert all("GPU only" in line for line in skips), tail
