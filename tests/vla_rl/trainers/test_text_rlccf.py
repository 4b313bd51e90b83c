"""RLCCF: two LMs trained together on the collective vote, through `vla-rl train`."""

import json

import yaml

from vla_rl.cli import main
from vla_rl.policies.lm.modeling_lm import LMPolicy


def test_rlccf_trains_two_models_on_the_collective_vote(tmp_path, capsys):
    paths = []
    for seed in (0, 1):
        paths.append(tmp_path / f"m{seed}")
        LMPolicy.from_config("tiny", tasks=["arithmetic"], seed=seed).save_pretrained(paths[-1])
    cfg = {"type": "text_rlccf", "models": [str(p) for p in paths], "out": str(tmp_path / "rlccf"),
           "test_episodes": 3, "test_samples": 2,
           "grpo": {"tasks": ["arithmetic"], "difficulty": 2, "iterations": 2,
                    "sampling": {"seeds_per_iter": 2, "group_size": 3}, "max_new_tokens": 8,
                    "optim": {"minibatch_size": 8}, "eval": {"episodes": 0}, "holdout": 10, "threads": 1}}
    path = tmp_path / "rlccf.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 0
    for k in (0, 1):
        rows = [json.loads(x) for x in (tmp_path / "rlccf" / f"model{k}" / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == 2 and "rollout/rlccf_label_accuracy" in rows[-1]
    summary = json.loads((tmp_path / "rlccf" / "summary.json").read_text())
    assert summary["summaries"][1]["iterations"] == 2
    row = summary["test"][1]["arithmetic"]
    assert 0 <= row["accuracy_before"] <= 1 and len(row["sampled_success_gain_ci95"]) == 2
    del cfg["test_episodes"], cfg["test_samples"]
    cfg["grpo"]["sampling"]["dynamic_sampling"] = True
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 2
    assert "dynamic_sampling" in capsys.readouterr().err
