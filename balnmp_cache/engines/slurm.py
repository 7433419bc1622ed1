"""``--engine slurm``: extract as a job array over ``--shard i/N``, ablate as an array over configurations.

Jobs are submitted through submitit, which writes the ``sbatch`` scripts, pickles each task's
arguments into ``--slurm-folder`` and waits for the results; where no Slurm is installed it runs the
same array with its local executor (one process per task on this machine), which is what the tests
use. Each array task runs the local stage on its part: ``run_extract`` on shard ``i`` of ``N`` (the
split every process computes alike, :mod:`balnmp_cache.shards`), or the local trainer on a pack of
configurations. The folders must be on a filesystem every node mounts at the same path.

The same arrays without submitit are plain ``sbatch --array`` scripts (``docs/scale-out.md``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from balnmp_cache.engines.options import EngineOptions, require
from balnmp_cache.engines.ray_cluster import enter
from balnmp_cache.engines.ray_extract import merge_results
from balnmp_cache.errors import BalnmpError, ConfigError
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.train.ablate import AblationGrid, AblationResult, GridRun, grid_trainer, run_ablation

__all__ = ["ablate_pack", "executor", "extract_shard", "run_ablation_slurm", "run_extract_slurm"]

log = logging.getLogger(__name__)

DEFAULT_SHARDS = 4


def executor(options: EngineOptions, name: str) -> Any:
    """A submitit executor for Slurm (or its local executor where ``sbatch`` is missing), parameters set."""
    submitit = require("submitit")
    folder = Path(options.slurm_folder) / "%j"
    ex = submitit.AutoExecutor(folder=folder)
    if ex.cluster != "slurm":
        log.warning("no Slurm here (sbatch not found): running the array with submitit's %s executor", ex.cluster)
    params: dict[str, Any] = {
        "name": f"balnmp-{name}", "timeout_min": options.slurm_time,
        "cpus_per_task": max(1, round(options.cpus_per_worker)), "tasks_per_node": 1, "nodes": 1,
    }
    gpus = options.num_gpus_per_worker
    if gpus:
        params["gpus_per_node"] = max(1, round(gpus))
    if options.slurm_mem_gb:
        params["mem_gb"] = options.slurm_mem_gb
    if options.slurm_partition:
        params["slurm_partition"] = options.slurm_partition
    if options.slurm_parallelism:
        params["slurm_array_parallelism"] = options.slurm_parallelism
    ex.update_parameters(**params)
    return ex


def extract_shard(cwd: str, config: ExtractConfig) -> Any:
    """One array task of ``extract``: the local run on ``config.shard``."""
    from balnmp_cache.extract import run_extract

    enter(cwd)
    return run_extract(config)


def ablate_pack(cwd: str, runs: list[GridRun]) -> list[str]:
    """One array task of ``ablate``: train ``runs`` one after another, loading each cache once."""
    enter(cwd)
    train = grid_trainer()
    for run in runs:
        train(run)
    return [run.name for run in runs]


def _results(jobs: list[Any], what: str) -> list[Any]:
    """Every job's result, or one line naming the first failed job and its log."""
    results = []
    for job in jobs:
        try:
            results.append(job.result())
        except Exception as err:  # submitit re-raises the task's error (FailedJobError for a killed task)
            if isinstance(err, BalnmpError):
                raise
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise BalnmpError(f"{what} array task {job.job_id} failed: {first} (its log: {job.paths.stderr}); "
                              "finished work is kept and the same command resumes") from None
    return results


def run_extract_slurm(
    config: ExtractConfig, options: EngineOptions, *, progress: ProgressCallback | None = None
) -> Any:
    """Extract ``config``'s slides as an array of ``options.workers`` shards; the merged local results."""
    require("submitit")  # before any work: one line saying how to install it
    if config.shard is not None:
        raise ConfigError("--engine slurm makes the shards itself; drop --shard (or give --workers N for N shards)")
    t0 = time.perf_counter()
    count = options.workers or DEFAULT_SHARDS
    shards = [config.model_copy(update={"shard": f"{i}/{count}"}) for i in range(count)]
    jobs = executor(options, "extract").map_array(extract_shard, [os.getcwd()] * count, shards)
    log.info("submitted extract as array %s of %d shard(s)", jobs[0].job_id.split("_")[0], count)
    emit(progress, "start", "shards", total=count)
    parts = []
    for job in jobs:
        parts.extend(_results([job], "extract"))
        emit(progress, "advance", "shards", steps=1)
    emit(progress, "end", "shards")
    return merge_results(parts, time.perf_counter() - t0)


def run_ablation_slurm(
    config: AblationGrid, options: EngineOptions, *, progress: ProgressCallback | None = None
) -> AblationResult:
    """Train the grid's unfinished configurations as an array (one task per pack), then tabulate."""
    from balnmp_cache.engines.ray_ablate import pending_runs

    require("submitit")
    runs, pending = pending_runs(config)
    if pending:
        count = min(len(pending), options.workers or len(pending))
        packs = [pending[i::count] for i in range(count)]
        jobs = executor(options, "ablate").map_array(ablate_pack, [os.getcwd()] * count, packs)
        log.info("submitted ablate as array %s of %d task(s) for %d run(s)", jobs[0].job_id.split("_")[0], count,
                 len(pending))
        emit(progress, "start", "runs", total=len(runs))
        emit(progress, "advance", "runs", steps=len(runs) - len(pending))
        for job, pack in zip(jobs, packs, strict=True):
            _results([job], "ablate")
            emit(progress, "advance", "runs", steps=len(pack))
        emit(progress, "end", "runs")
    result = run_ablation(config)  # every run is finished: only the tables are written
    result.n_done_before = len(runs) - len(pending)
    return result
