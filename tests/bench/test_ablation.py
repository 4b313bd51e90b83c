"""The ablation bench's table and its refusal of unknown variants (the runs themselves are bench-sized)."""

import pytest

from bench.ablation import VARIANTS, AblationConfig, markdown_table, run_ablation


def test_markdown_table_has_a_row_per_variant_and_the_start():
    result = {"tasks": ["mujoco/A-v1", "mujoco/B-v1"],
              "before": {"success": {"mujoco/A-v1": 0.1, "mujoco/B-v1": 0.3}, "mean": 0.2},
              "variants": {name: {"success": {"mujoco/A-v1": 0.5, "mujoco/B-v1": 0.25}, "mean": 0.375,
                                  "env_steps": 1000, "wall_s": 12.0} for name in VARIANTS}}
    lines = markdown_table(result).splitlines()
    assert lines[0].startswith("| variant | A-v1 | B-v1 | mean |")
    assert "| SFT (start) | 10.0% | 30.0% | 20.0% |" in lines[2]
    assert len(lines) == 3 + len(VARIANTS) and "| +clip_higher | 50.0% | 25.0% | 37.5% | +17.5 | 1000 | 12 |" in lines


def test_unknown_variant_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="valid: grpo"):
        run_ablation(AblationConfig(variants=["grpo", "ppo"], out=str(tmp_path), results=str(tmp_path / "r.json")))
