"""Joining a Ray cluster, or starting one on this machine: the one place that calls ``ray.init``."""

from __future__ import annotations

import logging
from types import ModuleType

from vla_rl.availability import require

logger = logging.getLogger(__name__)


def connect(address: str | None = None) -> ModuleType:
    """The ``ray`` module, connected: to the cluster at ``address`` (``"host:port"``, ``"auto"``), or, with None, to a
    new Ray instance started here (this machine's CPUs, no dashboard; never another run's instance). A driver already
    connected stays on its cluster (tests connect first to a `ray.cluster_utils.Cluster`).

    Raises:
        DependencyNotInstalled: ray is not installed (names the extra: ``pip install -e '.[ray]'``).
    """
    ray = require("ray")
    if ray.is_initialized():
        return ray
    if address is None:
        logger.info("starting a local Ray instance (distributed.address is unset)")
        # "local": a new instance even when another was started on this machine (plain ray.init() would join the
        # cluster a `ray start` or another run left in /tmp/ray, and die with it); address=auto joins that one
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    return ray
