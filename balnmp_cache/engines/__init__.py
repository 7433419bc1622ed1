"""Running ``extract`` and ``ablate`` beyond one process, on existing engines: Ray and Slurm (via submitit).

Both engines hand out whole units of work and let the stages do what they already do alone:

* extract: a unit is a chunk of slides (Ray) or a ``--shard I/N`` (Slurm); each worker runs
  :func:`~balnmp_cache.extract.run_extract` on it, writing the shared cache with its atomic per-slide
  writes and OS locks, so the cache is the one a local run writes, and any run resumes any other;
* ablate: a unit is a configuration (Ray) or a pack of them (Slurm); each is trained exactly as a
  local ``ablate`` trains it, under its run directory's lock, and the tables are written by a local
  :func:`~balnmp_cache.train.run_ablation` over the finished runs.

:func:`engine_runner` picks the function for a stage and engine; ``ray`` and ``submitit`` are
imported only when an engine is used (:func:`~balnmp_cache.engines.options.require`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from balnmp_cache.engines.options import EngineOptions, require

__all__ = ["EngineOptions", "engine_runner", "require"]

_RUNNERS = {
    ("extract", "ray"): "balnmp_cache.engines.ray_extract:run_extract_ray",
    ("ablate", "ray"): "balnmp_cache.engines.ray_ablate:run_ablation_ray",
    ("extract", "slurm"): "balnmp_cache.engines.slurm:run_extract_slurm",
    ("ablate", "slurm"): "balnmp_cache.engines.slurm:run_ablation_slurm",
}


def engine_runner(stage: str, options: EngineOptions) -> Callable[..., Any] | None:
    """``function(config, options, progress=...)`` running ``stage`` on ``options.engine``; ``None`` for local."""
    import importlib

    if options.engine == "local":
        return None
    module, function = _RUNNERS[(stage, options.engine)].split(":")
    runner: Callable[..., Any] = getattr(importlib.import_module(module), function)
    return runner
