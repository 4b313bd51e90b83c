"""`vla-rl bench env --backend libero`'s plumbing without LIBERO: the summary's ratios, and a
backend's figures written beside the others' in bench/results/env.json."""

from __future__ import annotations

import json

from bench.env_bench import _write_keeping_others
from bench.libero_env_bench import _libero_summary


def test_summary_ratios_by_wall_clock_and_cpu():
    row = {"env_steps_per_s": 4.0, "steps_per_cpu_s": 6.0, "pss_mb": 800.0}
    results = {"libero_subproc": row, "ours_step": {**row, "env_steps_per_s": 3.0, "steps_per_cpu_s": 6.0},
               "ours_chunk": {**row, "env_steps_per_s": 20.0, "steps_per_cpu_s": 30.0, "pss_mb": 400.0}}
    s = _libero_summary(results, n=4)
    assert s["ours_step_over_libero"] == 0.75 and s["ours_step_over_libero_per_cpu_s"] == 1.0
    assert s["ours_chunk_over_libero"] == 5.0 and s["ours_chunk_over_libero_per_cpu_s"] == 5.0
    assert s["pss_mb_per_env"] == {"libero_subproc": 200.0, "ours_step": 200.0, "ours_chunk": 100.0}


def test_a_backend_rewrite_keeps_the_other_keys(tmp_path):
    out = tmp_path / "env.json"
    _write_keeping_others(out, {"results": {"mujoco": 1}, "wall_s": 2})
    _write_keeping_others(out, {**json.loads(out.read_text()), "libero": {"x": 1}})
    _write_keeping_others(out, {"results": {"mujoco": 3}, "wall_s": 4})  # the MuJoCo bench again
    assert json.loads(out.read_text()) == {"results": {"mujoco": 3}, "wall_s": 4, "libero": {"x": 1}}
