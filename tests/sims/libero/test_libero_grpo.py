"""GRPO on a LIBERO task through `vla-rl train` and the same config keys as the MuJoCo tasks: 2 iterations of
the micro VLA shaped for LIBERO (configs/vla_grpo_libero_smoke.yaml). Success may be 0: it checks the plumbing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vla_rl.availability import is_available

if not is_available("libero"):
    pytest.skip("the libero extra is not installed (make install-libero)", allow_module_level=True)

from sims.libero.tiny_policy import tiny_policy  # noqa: E402
from vla_rl.cli import main  # noqa: E402
from vla_rl.policies.vla.modeling_vla import VLAPolicy  # noqa: E402

CONFIG = Path(__file__).parents[3] / "configs" / "vla_grpo_libero_smoke.yaml"


def test_two_grpo_iterations_on_libero_through_the_cli(tmp_path):
    init, out = tmp_path / "init", tmp_path / "grpo"
    tiny_policy(["libero/spatial/0"]).save_pretrained(init)
    rc = main(["train", str(CONFIG), f"init={init}", f"out={out}", "threads=2"])
    assert rc == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and "eval/success" in rows[-1]
    # 1 seed x 2 rollouts per iteration, each to LIBERO-Spatial's 220-step limit unless it succeeds
    steps = [rows[0]["perf/env_steps"], rows[1]["perf/env_steps"] - rows[0]["perf/env_steps"]]  # (a running total)
    assert all(0 < s <= 2 * 220 for s in steps), steps
    assert all(0.0 <= r["rollout/success"] <= 1.0 for r in rows)
    policy = VLAPolicy.from_pretrained(out / "last")
    assert policy.config.cameras == ("agentview", "wrist") and policy.config.state_dim == 8
    assert (out / "best").is_dir() and (out / "state" / "trainer.pt").is_file()
