"""The ManiSkill pipeline's plumbing through the CLI: `vla-rl collect` with the motion planner (2 episodes) -> the
LeRobot v3 dataset loads -> `vla-rl sft` (a few steps of a micro VLA) -> `vla-rl train` (one GRPO iteration, the
MuJoCo tasks' schema with only `tasks` changed). The measured pipeline: bench/results/maniskill_pipeline.json.

Not collected by itself: `test_maniskill_env.py` runs it in an interpreter of its own (SAPIEN's Vulkan must be the
first graphics driver a process loads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from vla_rl.availability import is_available

pytestmark = pytest.mark.skipif(not (is_available("mani_skill") and is_available("sapien")),
                                reason="the maniskill extra is not installed (make install-maniskill)")

TASK = "maniskill/PickCube-v1"
SIZE = 32
MICRO_POLICY = {  # the quickstart test's micro VLA: seconds per step on a CPU
    "cameras": ["agentview", "wrist"],
    "chunk_size": 8,
    "vision": {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_layers": 1, "num_heads": 2,
               "intermediate_size": 64},
    "lm": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64},
}


@pytest.fixture(autouse=True)
def _vulkan_or_skip() -> None:
    from sims.maniskill.vulkan import vulkan_dir, vulkan_ready

    if not vulkan_ready():
        pytest.skip(f"no Vulkan driver in {vulkan_dir()} (make install-maniskill)")


def test_collect_sft_and_one_grpo_iteration(tmp_path) -> None:
    from vla_rl.cli import main
    from vla_rl.data.lerobot.reader import LeRobotReader

    data, sft, grpo = tmp_path / "data", tmp_path / "sft", tmp_path / "grpo"
    assert main(["collect", "--task", TASK, "--episodes", "2", "--out", str(data), "--image_size", str(SIZE)]) == 0

    reader = LeRobotReader(data)
    assert reader.num_episodes == 2 and reader.info["vla_rl"]["env_task"] == TASK
    for i in range(2):
        ep = reader.episode(i)
        assert ep.success and ep.seed == i  # the planner's demos on train seeds 0, 1, kept only when solved
        assert ep.action.shape == (len(ep), 7) and np.abs(ep.action).max() <= 1.0
        assert ep.state.shape == (len(ep), 8) and ep.frames["wrist"].shape == (len(ep), SIZE, SIZE, 3)
        assert (ep.action[:, 6] > 0).any() and (ep.action[:, 6] < 0).any()  # the gripper opens and closes
        assert ep.state[-1, 2] > ep.state[0, 2] - 0.2 and "cube" in ep.instruction

    sft_cfg = {"data": [str(data)], "out": str(sft), "policy": MICRO_POLICY, "steps": 3, "batch_size": 8,
               "warmup_steps": 1, "eval_episodes": 0, "threads": 1}
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(sft_cfg))
    assert main(["sft", str(tmp_path / "sft.yaml")]) == 0
    summary = json.loads((sft / "summary.json").read_text())
    assert summary["tasks"] == [TASK] and summary["samples"] == sum(len(reader.episode(i, frames=False))
                                                                    for i in range(2))

    # the measured run's config, shrunk
    grpo_cfg = yaml.safe_load(Path("configs/vla_grpo_maniskill_pick.yaml").read_text())
    grpo_cfg |= {"init": str(sft / "best"), "out": str(grpo), "iterations": 1, "threads": 1, "max_wall_s": None}
    grpo_cfg["sampling"] |= {"seeds_per_iter": 1, "group_size": 2}
    grpo_cfg["env"] |= {"num_envs": 2, "num_workers": 1}
    (tmp_path / "grpo.yaml").write_text(yaml.safe_dump(grpo_cfg))
    assert main(["train", str(tmp_path / "grpo.yaml")]) == 0
    rows = [json.loads(line) for line in (grpo / "metrics.jsonl").read_text().splitlines()]
    rollout = next(r for r in rows if "rollout/success" in r)
    assert 0.0 <= rollout["rollout/success"] <= 1.0 and rollout["rollout/trajectories"] == 2
    assert next(r["perf/env_steps"] for r in rows if "perf/env_steps" in r) >= 2
    assert (grpo / "last" / "config.json").is_file()
