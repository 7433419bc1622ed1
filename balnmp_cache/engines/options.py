"""Where a stage's work runs: this process, a Ray cluster or a Slurm array (``--engine``)."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Literal

from pydantic import Field

from balnmp_cache.config import StageConfig
from balnmp_cache.errors import ConfigError

__all__ = ["EngineOptions", "require"]

_EXTRAS = {"ray": "ray", "submitit": "slurm"}


class EngineOptions(StageConfig):
    """The ``--engine`` flags of ``extract`` and ``ablate``; never saved with a stage's configuration."""

    engine: Literal["local", "ray", "slurm"] = Field(
        "local",
        description="where the work runs: this process, a Ray cluster (pip install 'balnmp-cache[ray]') or a Slurm "
        "job array through submitit (pip install 'balnmp-cache[slurm]'; submitit's local executor without Slurm)",
    )
    address: str | None = Field(
        None,
        description="Ray: the cluster to join (host:6379, 'auto', or ray://host:10001); default: RAY_ADDRESS, "
        "else a Ray started inside this process",
    )
    workers: int | None = Field(
        None,
        ge=1,
        description="Ray: encoder actors (extract) or concurrent runs (ablate), default as many as the cluster's "
        "resources hold; Slurm: array tasks (extract: shards, default 4; ablate: packs of runs, default one per run)",
    )
    cpus_per_worker: float = Field(1.0, gt=0, description="CPU cores each worker declares (Ray) or asks for (Slurm)")
    num_gpus_per_worker: float | None = Field(
        None,
        ge=0,
        description="GPUs each worker declares, fractions allowed for ablate (e.g. 0.25); default: 1 for extract "
        "when the cluster has GPUs, else 0",
    )
    chunk_slides: int | None = Field(
        None,
        ge=1,
        description="Ray extract: slides per unit of work; default: the cohort cut into 8 chunks per worker, "
        "balanced by bytes",
    )
    retries: int = Field(3, ge=0, description="Ray: times a unit of work is retried after its worker or node died")
    slurm_folder: Path = Field(Path("out/slurm"), description="Slurm: submitit's folder for job scripts and logs")
    slurm_partition: str | None = Field(None, description="Slurm: partition to submit to")
    slurm_time: int = Field(60, ge=1, description="Slurm: time limit of each array task, in minutes")
    slurm_mem_gb: float | None = Field(None, gt=0, description="Slurm: memory of each array task, in GB")
    slurm_parallelism: int | None = Field(
        None, ge=1, description="Slurm: array tasks running at once (sbatch --array=...%N)"
    )


def require(module: str) -> ModuleType:
    """Import the engine ``module`` (``ray``, ``submitit``), or one line saying how to install it.

    Raises:
        ConfigError: it is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = _EXTRAS[module]
        raise ConfigError(
            f"--engine {extra} needs {module}, which is not installed: pip install 'balnmp-cache[{extra}]'"
        ) from None
