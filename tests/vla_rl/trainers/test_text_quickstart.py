"""The text quickstart job: SFT, test, GRPO, test, through `vla-rl train`."""

import json

import pytest
import yaml

from vla_rl.cli import main


def test_text_quickstart_writes_accuracy_before_and_after(tmp_path, capsys):
    cfg = {"type": "text_quickstart", "task": "arithmetic", "difficulty": 2, "model": "tiny", "sft_examples": 32,
           "sft_steps": 3, "test_episodes": 6, "test_samples": 3, "select": "last", "threads": 1,
           "out": str(tmp_path / "run"),
           "grpo": {"iterations": 1, "sampling": {"seeds_per_iter": 2, "group_size": 2}, "max_new_tokens": 10,
                    "optim": {"minibatch_size": 4}, "eval": {"every": 1, "episodes": 2}, "holdout": 10}}
    path = tmp_path / "tq.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert 0 <= res["accuracy_before"] <= 1 and 0 <= res["accuracy_after"] <= 1
    assert res["improvement"] == pytest.approx(res["accuracy_after"] - res["accuracy_before"])
    assert res["test_episodes"] == 6 and res["generated_tokens"] > 0
    assert res["grpo_checkpoint"].endswith("last") and res["test_sampling"] == {"samples": 3, "temperature": 0.6}
    assert all(0 <= res[f"{k}_{w}"] <= 1 for k in ("sampled_success", "majority_success") for w in ("before", "after"))
    lo, hi = res["sampled_success_gain_ci95"]
    assert -1 <= lo <= hi <= 1
    assert "held-out accuracy" in capsys.readouterr().out
