"""The simulated two-node Ray cluster the distributed tests share (imported by them, not collected)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


@contextmanager
def two_node_cluster(worker_resources: dict[str, float] | None = None) -> Iterator:
    """A head node (where the driver runs) and one worker node, 2 CPUs each, the worker advertising
    ``worker_resources``; Ray joined to it. Actors import this tree (PYTHONPATH, restored after). Yields the
    `ray.cluster_utils.Cluster`, its worker node as ``.env_node``."""
    import ray
    from ray.cluster_utils import Cluster

    old_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), old_path) if p)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    c.env_node = c.add_node(num_cpus=2, resources=worker_resources or {})
    ray.init(address=c.address, logging_level=logging.WARNING)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        if old_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old_path


def kill_and_wait(actor, probe: str = "__ray_ready__", timeout_s: float = 30.0) -> bool:
    """``ray.kill`` an actor and wait until a call of its method ``probe`` fails as a dead actor's does (the kill is
    asynchronous: a call sent at once may still be answered); False when it still answers after ``timeout_s``."""
    import time

    import ray

    ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(getattr(actor, probe).remote(), timeout=timeout_s)
        except ray.exceptions.RayActorError:
            return True
        time.sleep(0.05)
    return False
