import pytest

from vla_rl.config import ConfigError, load_config, parse_override
from vla_rl.envs import EnvConfig
from vla_rl.evaluation import EvalConfig


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("episodes: 7\nenv:\n  num_envs: 4\n")
    cfg = load_config(EvalConfig, p, ["env.num_envs=32", "split=val", "env.cameras=[wrist]"])
    assert cfg.episodes == 7 and cfg.env.num_envs == 32 and cfg.split == "val"
    assert cfg.env.cameras == ("wrist",)
    assert cfg.env.image_size == EnvConfig().image_size  # untouched defaults survive


def test_override_parsing():
    assert parse_override("a.b=32") == (["a", "b"], 32)
    assert parse_override("x=null") == (["x"], None)
    assert parse_override("x=hello") == (["x"], "hello")
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_override("novalue")


def test_unknown_key_names_key_and_choices(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(EvalConfig, None, ["env.num_envz=3"])
    msg = str(e.value)
    assert "env.num_envz" in msg and "num_envs" in msg and "image_size" in msg
    p = tmp_path / "c.yaml"
    p.write_text("episods: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(EvalConfig, p)
    assert "episods: unknown key" in str(e.value) and "episodes" in str(e.value) and str(p) in str(e.value)


def test_wrong_type_and_range():
    with pytest.raises(ConfigError, match="env.num_envs"):
        load_config(EvalConfig, None, ["env.num_envs=many"])
    with pytest.raises(ConfigError, match="greater than or equal to 1"):
        load_config(EvalConfig, None, ["episodes=0"])
    with pytest.raises(ConfigError, match="split"):
        load_config(EvalConfig, None, ["split=holdout"])


def test_unknown_task_and_camera_list_valid_ones():
    with pytest.raises(ConfigError) as e:
        load_config(EvalConfig, None, ["task=mujoco/Nope-v1"])
    assert "mujoco/PickCube-v1" in str(e.value)
    with pytest.raises(ConfigError, match="agentview"):
        load_config(EvalConfig, None, ["env.cameras=[top]"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(EvalConfig, tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("episodes: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(EvalConfig, p)
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(EvalConfig, p)
