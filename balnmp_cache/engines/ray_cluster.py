"""Joining a Ray cluster for one stage, and what every Ray engine shares.

Settings that matter on a real cluster, handled here once:

* the driver joins ``--address`` (or ``RAY_ADDRESS``), else starts a private Ray whose object
  store is capped (:data:`LOCAL_OBJECT_STORE_BYTES`): nothing large travels through it, only slide
  lists, configurations and per-run summaries;
* every worker changes to the driver's working directory first, so relative paths in a
  configuration (``out/cache``) name the same files as in a local run; the folders must be on a
  filesystem every node mounts at the same path;
* the ``ray`` driver logs of workers are not forwarded (each stage writes its own log file).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from balnmp_cache.engines.options import EngineOptions, require
from balnmp_cache.errors import BalnmpError

__all__ = ["LOCAL_OBJECT_STORE_BYTES", "cluster_gpus", "connected", "fitting_workers", "raise_cause"]

log = logging.getLogger(__name__)

LOCAL_OBJECT_STORE_BYTES = 200 * 1024**2
"""The object store of a Ray started inside the driver: small, since only small objects pass."""


@contextlib.contextmanager
def connected(options: EngineOptions) -> Iterator[ModuleType]:
    """``ray``, joined to ``options.address`` (or a private instance) for the duration of the block."""
    ray = require("ray")
    address = options.address or os.environ.get("RAY_ADDRESS")
    settings: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if address:
        settings["address"] = address
    else:
        settings["object_store_memory"] = LOCAL_OBJECT_STORE_BYTES
    try:
        ray.init(**settings)
    except ConnectionError as err:
        raise BalnmpError(
            f"cannot join the Ray cluster at {address}: {err} (start one with `ray start --head`, or pass its "
            "--address host:6379)"
        ) from None
    log.info("ray: %s", _describe(ray))
    try:
        yield ray
    finally:
        ray.shutdown()


def _describe(ray: ModuleType) -> str:
    resources = ray.cluster_resources()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return f"{len(nodes)} node(s), {resources.get('CPU', 0):g} CPU(s), {resources.get('GPU', 0):g} GPU(s)"


def cluster_gpus(ray: ModuleType) -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))


def fitting_workers(ray: ModuleType, cpus: float, gpus: float) -> int:
    """How many workers of ``cpus`` CPUs and ``gpus`` GPUs the cluster's nodes hold together (at least 1)."""
    total = 0
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        have = node.get("Resources", {})
        fits = int(have.get("CPU", 0.0) // cpus) if cpus else 10**6
        if gpus:
            fits = min(fits, int(have.get("GPU", 0.0) // gpus))
        total += fits
    return max(1, total)


def raise_cause(err: BaseException) -> None:
    """Re-raise what a remote task raised when it is one of ours (a user error prints as one line)."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BalnmpError | OSError):
        raise cause from None
    raise err


def enter(cwd: str) -> None:
    """In a worker: work in the driver's directory, with the driver's logging level."""
    os.chdir(cwd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
