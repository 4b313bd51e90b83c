"""`vla-rl bench env --backend maniskill`: the option parsing and the merge into env.json (no simulator here; the
measured row is bench/results/env.json's ``maniskill`` key)."""

import json

import pytest

from bench.env_bench import BACKENDS, _backend
from bench.results_io import merge_result


def test_backend_option_is_split_off_the_other_arguments() -> None:
    assert _backend(["n=4"]) == ("mujoco", ["n=4"])
    assert _backend(["--backend", "maniskill", "n=4"]) == ("maniskill", ["n=4"])
    assert _backend(["n=4", "backend=maniskill"]) == ("maniskill", ["n=4"])
    assert BACKENDS["maniskill"] == "bench.maniskill_env_bench:main"
    with pytest.raises(SystemExit, match="valid: mujoco, libero, maniskill"):
        _backend(["--backend", "maniskil"])


def test_merge_keeps_the_other_figures(tmp_path) -> None:
    out = tmp_path / "env.json"
    out.write_text(json.dumps({"results": {"step": 1}, "summary": {"x": 2}}))
    merge_result(out, "maniskill", {"results": {"ours_step": 3.0}})
    merge_result(out, "maniskill", {"results": {"ours_step": 4.0}})  # a rerun replaces its own row only
    assert json.loads(out.read_text()) == {"results": {"step": 1}, "summary": {"x": 2},
                                           "maniskill": {"results": {"ours_step": 4.0}}}
    merge_result(tmp_path / "new" / "env.json", "maniskill", {"a": 1})
    assert json.loads((tmp_path / "new" / "env.json").read_text()) == {"maniskill": {"a": 1}}
