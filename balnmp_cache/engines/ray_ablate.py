"""``ablate GRID --engine ray``: every configuration of a grid a Ray task with declared resources.

Each task trains one configuration as a local ``ablate`` does (:func:`~balnmp_cache.train.ablate.grid_trainer`):
under its run directory's lock, into the same run directory, with the same seed. A worker process
keeps the cache it loaded for the next task (Ray reuses worker processes; ``max_calls=0`` keeps GPU
workers too), and runs are submitted cache by cache so that one worker rarely loads two. Finished
runs are skipped by their name, which digests the whole configuration. A task whose worker or node
died is retried by Ray elsewhere (``--retries``). When all are done, ``runs.csv`` and ``results.csv``
are written by a local :func:`~balnmp_cache.train.run_ablation` over the finished runs, so the
tables are those of a local ablate.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable
from typing import Any

from balnmp_cache.engines.options import EngineOptions, require
from balnmp_cache.engines.ray_cluster import connected, enter, fitting_workers, raise_cause
from balnmp_cache.errors import BalnmpError
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.train.ablate import AblationGrid, AblationResult, GridRun, expand_grid, grid_trainer, run_ablation

__all__ = ["run_ablation_ray", "train_task"]

log = logging.getLogger(__name__)

_TRAIN: Callable[[GridRun], None] | None = None  # one per worker process: its loaded cache outlives a task


def train_task(cwd: str, run: GridRun) -> str:
    """In a Ray worker: train ``run`` (relative paths read from the driver's directory ``cwd``)."""
    global _TRAIN
    enter(cwd)
    if _TRAIN is None:
        _TRAIN = grid_trainer()
    _TRAIN(run)
    return run.name


def pending_runs(config: AblationGrid) -> tuple[list[GridRun], list[GridRun]]:
    """Every configuration of the grid, and those not finished yet, cache by cache."""
    from balnmp_cache.runs import is_finished

    runs = expand_grid(config, out=config.out)
    pending = sorted((r for r in runs if not is_finished(r.config.out)), key=lambda r: str(r.config.cache))
    return runs, pending


def run_ablation_ray(
    config: AblationGrid, options: EngineOptions, *, progress: ProgressCallback | None = None
) -> AblationResult:
    """Train the grid's unfinished configurations on a Ray cluster, then tabulate all finished runs.

    Raises:
        ConfigError: the ``ray`` extra is missing, an invalid grid; BalnmpError: a run failed, or lost
            its worker more than ``options.retries`` times.
    """
    require("ray")  # before any work: one line saying how to install it
    runs, pending = pending_runs(config)
    gpus = options.num_gpus_per_worker or 0.0
    log.info("ablation %s: %d configurations, %d to run on Ray", config.out, len(runs), len(pending))
    emit(progress, "start", "runs", total=len(runs))
    emit(progress, "advance", "runs", steps=len(runs) - len(pending))
    if pending:
        with connected(options) as ray:
            task = ray.remote(num_cpus=options.cpus_per_worker, num_gpus=gpus, max_retries=options.retries,
                              max_calls=0)(train_task)
            window = options.workers or fitting_workers(ray, options.cpus_per_worker, gpus)
            _run_all(ray, task, pending, window, options.retries, progress)
    emit(progress, "end", "runs")
    result = run_ablation(config)  # every run is finished: only the tables are written
    result.n_done_before = len(runs) - len(pending)
    return result


def _run_all(
    ray: Any, task: Any, pending: list[GridRun], window: int, retries: int, progress: ProgressCallback | None
) -> None:
    """Keep ``window`` tasks in flight until every run is trained."""
    queue = collections.deque(pending)
    flying: dict[Any, GridRun] = {}
    cwd = os.getcwd()
    while queue or flying:
        while queue and len(flying) < window:
            run = queue.popleft()
            flying[task.remote(cwd, run)] = run
        (ref,), _ = ray.wait(list(flying), num_returns=1)
        run = flying.pop(ref)
        try:
            ray.get(ref)
        except ray.exceptions.RayTaskError as err:
            raise_cause(err)
        except ray.exceptions.RayError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BalnmpError(f"run {run.name} lost its Ray worker {1 + retries} times ({first}); "
                              "finished runs are kept and a re-run resumes") from None
        emit(progress, "advance", "runs", steps=1)
