"""The quickstart job end to end on a micro budget (through `vla-rl train`), and its config checks."""

import json

import pytest
import yaml
from pydantic import ValidationError

from vla_rl.cli import main
from vla_rl.config import ConfigError, load_config
from vla_rl.trainers.quickstart import QuickstartConfig

MICRO_POLICY = {
    "cameras": ["agentview"],
    "chunk_size": 4,
    "vision": {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_layers": 1, "num_heads": 2,
               "intermediate_size": 64},
    "lm": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
}


def micro_config(out) -> dict:
    return {
        "type": "quickstart",
        "tasks": ["mujoco/PickCubeNarrow-v1", "mujoco/OpenDrawerNarrow-v1"],
        "image_size": 32,
        "out": str(out),
        "test_episodes": 3,
        "env": {"num_envs": 3},
        "sft": {"policy": MICRO_POLICY, "steps": 4, "batch_size": 8, "warmup_steps": 1, "eval_episodes": 0,
                "threads": 1},
        "grpo": {"iterations": 2, "sampling": {"seeds_per_iter": 1, "group_size": 2},
                 "optim": {"minibatch_size": 16, "max_update_samples": 24}, "eval": {"every": 1, "episodes": 2},
                 "threads": 1, "env": {"num_envs": 2}},
    }


def test_quickstart_runs_every_phase_and_writes_results(tmp_path, capsys):
    path = tmp_path / "qs.yaml"
    cfg = micro_config(tmp_path / "run")
    cfg["sft"]["policy"] = MICRO_POLICY | {"point_decoding": "median"}
    cfg["also_test"] = ["argmax", "median"]  # the policy's own (median) is the headline, not repeated
    cfg |= {"pretrain_tasks": ["mujoco/Reach-v1"], "pretrain_demos": 2}
    cfg["sft"]["data_weights"] = [1, 1, 2]  # suite tasks first, then pretraining tasks
    cfg["time_budget_min"] = 0.01  # spent before GRPO starts: it runs (and validates) one of its two iterations
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    res = json.loads((run / "results.json").read_text())
    tasks = ["mujoco/PickCubeNarrow-v1", "mujoco/OpenDrawerNarrow-v1"]
    for key in ("success_before", "success_after"):
        assert set(res[key]) == {*tasks, "mean"}
        assert all(0.0 <= v <= 1.0 for v in res[key].values())
        assert res[key]["mean"] == pytest.approx(sum(res[key][t] for t in tasks) / 2)
    assert res["improvement"] == pytest.approx(res["success_after"]["mean"] - res["success_before"]["mean"])
    assert res["test_episodes"] == 3 and res["env_steps"] > 0 and res["grpo_iterations"] == 1
    assert res["grpo_stopped_by_time"] and res["time_budget_s"] == pytest.approx(0.6)
    assert res["grpo_checkpoint"].endswith("best")  # chosen on validation seeds
    assert res["point_decoding"] == "median" and list(res["other_decodings"]) == ["argmax"]
    for key in ("success_before", "success_after"):
        assert set(res["other_decodings"]["argmax"][key]) == {*tasks, "mean"}
    assert set(res["phase_wall_s"]) == {"collect", "sft", "test_before", "grpo", "test_after"}
    assert (run / "data" / "PickCubeNarrow-v1" / "meta" / "info.json").is_file()
    reach = json.loads((run / "data" / "Reach-v1" / "meta" / "info.json").read_text())
    assert reach["total_episodes"] == 2 and res["pretrain_demos"] == {"mujoco/Reach-v1": 2}
    sft = json.loads((run / "sft" / "summary.json").read_text())
    assert sft["tasks"] == [*tasks, "mujoco/Reach-v1"]  # trained on, never rolled out or tested
    assert (run / "curves.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "success before RL" in out and "OpenDrawerNarrow-v1 (argmax)" in out and "greedy decoding: median" in out
    assert "GRPO iterations (time budget)" in out


def test_phase_keys_are_checked_at_load(tmp_path):
    cfg = micro_config(tmp_path)
    with pytest.raises(ConfigError, match=r"'grpo\.bogus'.*valid keys"):
        load_config(QuickstartConfig, None, [f"{k}={json.dumps(v)}" for k, v in cfg.items()] + ["grpo.bogus=1"])
    cfg["sft"]["out"] = "elsewhere"
    with pytest.raises(Exception, match="set by the quickstart itself"):
        QuickstartConfig.model_validate(cfg)
    del cfg["sft"]["out"]
    with pytest.raises(Exception, match="time_budget_min .* or grpo.max_wall_s, not both"):
        QuickstartConfig.model_validate(cfg | {"time_budget_min": 20, "grpo": cfg["grpo"] | {"max_wall_s": 60}})
    with pytest.raises(Exception, match="both suite and pretraining tasks"):
        QuickstartConfig.model_validate(cfg | {"pretrain_tasks": ["mujoco/OpenDrawerNarrow-v1"]})
    cfg["sft"]["data_weights"] = [1, 1]  # two suite tasks, one pretraining task: three datasets
    with pytest.raises(Exception, match=r"sft\.data_weights"):
        QuickstartConfig.model_validate(cfg | {"pretrain_tasks": ["mujoco/Reach-v1"]})


def test_a_misspelt_phase_key_is_refused_at_load_naming_the_valid_ones(tmp_path):
    path = tmp_path / "qs.yaml"
    cfg = micro_config(tmp_path)
    cfg["grpo"]["sampling"]["group_sise"] = 4
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"grpo\.sampling\.group_sise: unknown key; valid keys here: .*group_size"):
        load_config(QuickstartConfig, path)
    with pytest.raises(ConfigError, match=r"'grpo\.lr'.*valid keys: .*optim"):  # now a key of a group
        load_config(QuickstartConfig, None, ["grpo.lr=1e-4"])
    with pytest.raises(ConfigError, match=r"'sft\.stesp'.*valid keys: .*steps"):
        load_config(QuickstartConfig, None, ["sft.stesp=10"])
    q = load_config(QuickstartConfig, None, ["grpo.optim.lr=2.0e-4", "grpo.sampling.group_size=4"])
    assert q.grpo_config().optim.lr == 2e-4 and q.grpo_config().sampling.group_size == 4


def test_train_refuses_an_unknown_job_type(capsys):
    assert main(["train", "type=nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "quickstart" in err and "vla_grpo" in err



def test_demo_spread_draws_the_suite_demos_near_the_centre_of_the_ranges(tmp_path):
    from vla_rl.trainers.quickstart import _Quickstart

    cfg = micro_config(tmp_path / "run") | {"tasks": ["mujoco/PickCube-v1"], "demo_spread": 0.1,
                                            "pretrain_tasks": ["mujoco/Reach-v1"], "pretrain_demos": 1}
    cfg["sft"]["data_weights"] = [1, 1]
    q = QuickstartConfig.model_validate(cfg)
    _Quickstart(q, None).collect()
    info = json.loads((tmp_path / "run" / "data" / "PickCube-v1" / "meta" / "info.json").read_text())
    assert info["vla_rl"]["env_task"] == "mujoco/PickCube-v1@spread=0.1"  # what a replay rebuilds
    reach = json.loads((tmp_path / "run" / "data" / "Reach-v1" / "meta" / "info.json").read_text())
    assert reach["vla_rl"]["env_task"] == "mujoco/Reach-v1"  # pretraining demos: the task as given
    assert q.grpo_config().tasks == ["mujoco/PickCube-v1"]  # rollouts and tests: the full task
    with pytest.raises(ValidationError, match="demo_spread"):
        QuickstartConfig.model_validate(cfg | {"demo_spread": 0.0})
