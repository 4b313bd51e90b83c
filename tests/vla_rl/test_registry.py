import pytest

from vla_rl.registry import Registry, RegistryError, resolve_entry_point


def test_register_get_and_decorator():
    reg: Registry = Registry("loss")

    @reg.register("grpo")
    def grpo():
        return 1

    reg.register("lazy", "math:sqrt")
    assert reg.get("grpo") is grpo
    assert reg.get("lazy")(9.0) == 3.0
    assert reg.names() == ["grpo", "lazy"] and "grpo" in reg and len(reg) == 2


def test_duplicate_name_refused():
    reg: Registry = Registry("loss")
    reg.register("a", object())
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("a", object())


def test_miss_lists_valid_names_and_suggests():
    reg: Registry = Registry("robot task")
    reg.register("mujoco/PickCube-v1", "x:y")
    reg.register("mujoco/Reach-v1", "x:y")
    with pytest.raises(RegistryError) as e:
        reg.get("mujoco/PickCub-v1")
    msg = str(e.value)
    assert "unknown robot task 'mujoco/PickCub-v1'" in msg
    assert "Did you mean 'mujoco/PickCube-v1'" in msg
    assert "mujoco/Reach-v1" in msg


def test_bad_entry_points():
    with pytest.raises(ValueError, match="package.module:Attr"):
        resolve_entry_point("math.sqrt")
    with pytest.raises(ImportError, match="has no 'nope'"):
        resolve_entry_point("math:nope")


def test_import_vla_rl_is_light():
    import subprocess
    import sys

    code = ("import sys, vla_rl, vla_rl.registry, vla_rl.config; "
            "heavy = [m for m in ('mujoco', 'torch', 'ray', 'sims', 'tasks') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
