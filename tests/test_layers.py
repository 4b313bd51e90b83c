"""The import contracts in pyproject.toml (import-linter) hold for the tree, and can fail: a module that imports
upward, even inside a function, is reported with the contract it breaks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vla_rl", "sims", "tasks", "robots", "bench")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("lint-imports is not installed (the dev extra: pip install -e '.[dev]')")
    return subprocess.run([str(exe), "--config", str(tree / "pyproject.toml"), "--no-cache"], cwd=tree,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the project's packages and pyproject.toml (no caches, no tests)."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "results"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_tree_keeps_every_contract(tree):
    r = lint_imports(tree)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("vla_rl/algos/_upward.py", "def f():\n    from vla_rl.trainers import grpo\n",
     "vla_rl.algos is pure maths"),
    ("vla_rl/rollout/_upward.py", "import tasks.robot.pick\n", "the core never imports simulators, tasks or robots"),
    ("sims/_upward.py", "def f():\n    import tasks.robot.reach\n", "simulators never import tasks"),
    ("vla_rl/policies/_upward.py", "from vla_rl.rollout import base\n", "policies never import rollout"),
    ("robots/_upward.py", "def f():\n    from vla_rl.trainers import grpo\n", "robots (the ROS 2 bridge) never import"),
])
def test_an_upward_import_is_reported(tree, module, line, contract):
    (tree / module).write_text(line)
    r = lint_imports(tree)
    assert r.returncode != 0
    broken = r.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken.replace("\n", " ") and module[:-3].replace("/", ".") in broken, r.stdout
