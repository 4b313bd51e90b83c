"""launch/ray_cluster.yaml and launch/slurm_ray.sh: the cluster config is a valid Ray cluster-launcher config whose
node types offer what the env actors ask for, and the SLURM script is valid bash whose `vla-rl train` command line
(and the YAML's) parses with the real CLI into a Ray-backend config whose actors fit the nodes it starts."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from vla_rl.cli import _job_type, parse_args
from vla_rl.trainers import TRAIN_JOBS

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "launch" / "ray_cluster.yaml"
SLURM = ROOT / "launch" / "slurm_ray.sh"


@pytest.fixture(autouse=True)
def _ray_counts_as_installed(monkeypatch):
    """backend=ray is refused at load without Ray; these checks are about the files, not this machine. Config
    paths are the repo root's."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr("vla_rl.distributed.config.is_available", lambda m: True)


def train_config(argv: list[str]):
    """``vla-rl train argv`` parsed as the CLI does; returns (config, its distributed section)."""
    cfg = parse_args(TRAIN_JOBS.get(_job_type(argv)), argv, "train")
    return cfg, (cfg.grpo.distributed if hasattr(cfg, "grpo") else cfg.distributed)


def slurm_train_argv(**env: str) -> list[str]:
    """The argv the SLURM script gives `vla-rl train`, expanded by bash from the script's own lines (its settings'
    defaults and ``env``; the head's address as SLURM would give it)."""
    script = SLURM.read_text()
    settings = "\n".join(line for line in script.splitlines() if re.match(r"^[A-Z_]+=\$\{[A-Z_]+:?-", line))
    tail = script[script.index("MEMORY=()"):].replace("vla-rl train", "printf '%s\\0'")
    assigns = "\n".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    out = subprocess.run(["bash", "-c", f"set -euo pipefail\n{assigns}\n{settings}\nADDRESS=10.0.0.1:6379\n{tail}"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return out.stdout.split("\0")[:-1]


def cluster() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def covers(node_resources: dict[str, float], dist) -> bool:
    """A node of this type can hold at least one env actor of ``dist``."""
    ask = {"CPU": dist.actor_cpus, **dist.actor_resources}
    return all(node_resources.get(k, 0) >= v for k, v in ask.items())


def test_the_cluster_yaml_is_a_valid_ray_cluster_config():
    ray = pytest.importorskip("ray")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    cfg = cluster()
    jsonschema.validate(cfg, schema)
    assert cfg["head_node_type"] in cfg["available_node_types"]


def test_the_cluster_node_types_offer_what_the_env_actors_ask_for():
    """The YAML's own command and the SLURM script's: env actors fit the CPU worker type only (the head and the GPU
    type hold none); learner ranks asking for a GPU fit the gpu type only."""
    types = cluster()["available_node_types"]
    lines = CLUSTER.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if "vla-rl train" in line)  # the command and its continuation
    text = " ".join(line.lstrip("#").strip().rstrip("\\") for line in lines[i:i + 2])
    cmd = shlex.split(text[text.index("vla-rl train"):])[2:]
    for argv in (cmd, slurm_train_argv()):
        _, dist = train_config(argv)
        assert dist.backend == "ray" and dist.actor_resources == {"env_node": 1.0}
        fits = {name for name, t in types.items() if covers(t["resources"], dist)}
        assert fits == {"cpu_env"}
    assert types[cluster()["head_node_type"]]["resources"]["CPU"] == 0
    _, dist = train_config(slurm_train_argv(EXTRA="grpo.distributed.learner_ranks=2 grpo.distributed.learner_gpus=1"))
    ask = {"CPU": dist.learner_cpus, "GPU": dist.learner_gpus}  # learner ranks on GPUs: the gpu type holds them
    assert {n for n, t in types.items() if all(t["resources"].get(k, 0) >= v for k, v in ask.items())} == {"gpu"}


def test_the_slurm_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SLURM)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-s", "bash", str(SLURM)], check=True)


def test_the_slurm_train_command_parses_with_the_cli():
    """Both kinds of config: the quickstart (its GRPO keys under grpo.) and a vla_grpo config (top level), with the
    memory bound and extra overrides; the address is the head's."""
    cfg, dist = train_config(slurm_train_argv())
    assert type(cfg).__name__ == "QuickstartConfig"
    assert (dist.backend, dist.address, dist.actor_memory_mb) == ("ray", "10.0.0.1:6379", None)
    cfg, dist = train_config(slurm_train_argv(CONFIG="configs/vla_grpo_long.yaml", PREFIX="", ACTOR_MEMORY_MB="2048",
                                              EXTRA="iterations=2 env.num_envs=32"))
    assert type(cfg).__name__ == "GRPOConfig" and (cfg.iterations, cfg.env.num_envs) == (2, 32)
    assert (dist.backend, dist.address, dist.actor_memory_mb) == ("ray", "10.0.0.1:6379", 2048)


def test_the_slurm_workers_advertise_the_resource_the_actors_ask_for():
    """Each worker's `ray start --resources` (as JSON, its CPU count substituted) offers the train command's
    actor_resources; the head offers no CPUs when there are workers."""
    script = SLURM.read_text()
    worker = next(line for line in script.splitlines() if "ray start --address" in line)
    resources = json.loads(re.search(r'--resources="((?:[^"\\]|\\.)*)"', worker).group(1).replace('\\"', '"')
                           .replace("$CPUS", "32"))
    _, dist = train_config(slurm_train_argv())
    assert all(resources.get(k, 0) >= v for k, v in dist.actor_resources.items())
    assert "HEAD_ARGS=(--num-cpus=0)" in script
