"""``extract --engine ray``: a pool of encoder actors, each extracting whole chunks of slides.

The driver resolves the slides once and cuts them into chunks balanced by bytes (a slide, or many
small ones, never single tiles through the object store). Each actor builds the encoder once and runs
:func:`~balnmp_cache.extract.run_extract` on one chunk after another, reading the slides and writing
the shared cache itself, so every file is written, locked and journaled exactly as in a local run.

A chunk whose actor died (its process, or its node) goes back to the queue and is run by a live
actor; the slides the dead actor finished are skipped there by the completion index, and one it was
writing is started again (its temporary is never taken for a file). A slide still locked by a dying
process is reported busy; those chunks are run once more at the end, after the lock is gone.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import time
from dataclasses import fields
from types import ModuleType
from typing import Any

from balnmp_cache.engines.options import EngineOptions, require
from balnmp_cache.engines.ray_cluster import cluster_gpus, connected, enter, fitting_workers, raise_cause
from balnmp_cache.errors import BalnmpError
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.progress import ProgressCallback, emit

__all__ = ["chunk_jobs", "merge_results", "run_extract_ray"]

log = logging.getLogger(__name__)

_COUNTS = ("n_ok", "n_failed", "n_empty", "n_skipped", "n_busy", "n_patches", "n_batches")
_BUSY_PAUSE_S = 2.0


class EncoderWorker:
    """One encoder actor: the encoder is built once; :meth:`extract` runs one chunk of slides."""

    def __init__(self, cwd: str, config: ExtractConfig) -> None:
        from balnmp_cache.extract.encode import BatchEncoder
        from balnmp_cache.extract.identity import remember_identity

        enter(cwd)
        self.config = config
        self.encoder = BatchEncoder.build(config)
        remember_identity(config, self.encoder.identity)

    def extract(self, jobs: list[Any]) -> Any:
        from balnmp_cache.extract import run_extract

        return run_extract(self.config, jobs=jobs, encoder=self.encoder)


def chunk_jobs(jobs: list[Any], workers: int, chunk_slides: int | None) -> list[list[Any]]:
    """``jobs`` cut into chunks of about equal bytes: ``chunk_slides`` slides each, else 8 per worker."""
    from balnmp_cache.extract.fingerprint import input_bytes
    from balnmp_cache.shards import select_shard

    count = math.ceil(len(jobs) / chunk_slides) if chunk_slides else 8 * workers
    count = max(1, min(len(jobs), count))
    chunks = [select_shard(jobs, i, count, weight=input_bytes) for i in range(count)]
    return [chunk for chunk in chunks if chunk]


def merge_results(parts: list[Any], seconds: float) -> Any:
    """One :class:`ExtractResult` of the chunks' results: rows and counts added, stage seconds summed."""
    from balnmp_cache.extract import ExtractResult

    total = ExtractResult(cache_dir=parts[0].cache_dir, seconds=seconds)
    for part in parts:
        total.rows.extend(part.rows)
        for name in _COUNTS:
            setattr(total, name, getattr(total, name) + getattr(part, name))
        total.setup_seconds = max(total.setup_seconds, part.setup_seconds)
        total.read_seconds += part.read_seconds
        total.compute_seconds += part.compute_seconds
        for f in fields(total.times):
            setattr(total.times, f.name, getattr(total.times, f.name) + getattr(part.times, f.name))
    return total


class _Pool:
    """Actors and the chunks in flight; a chunk of an actor that died is queued again (``retries`` times)."""

    def __init__(self, ray: ModuleType, actors: list[Any], retries: int, progress: ProgressCallback | None) -> None:
        self.ray, self.idle, self.retries, self.progress = ray, list(actors), retries, progress
        self.tries: collections.Counter[int] = collections.Counter()
        self.last_death = ""

    def run(self, chunks: list[list[Any]]) -> list[Any]:
        ray = self.ray
        queue = collections.deque(enumerate(chunks))
        flying: dict[Any, tuple[Any, int]] = {}
        results: list[Any] = [None] * len(chunks)
        while queue or flying:
            while queue and self.idle:
                actor, (index, _) = self.idle.pop(), queue[0]
                queue.popleft()
                flying[actor.extract.remote(chunks[index])] = (actor, index)
            if not flying:
                raise BalnmpError(f"every Ray worker died; the cache keeps what they finished and a re-run resumes "
                                  f"(last: {self.last_death})")
            (ref,), _ = ray.wait(list(flying), num_returns=1)
            actor, index = flying.pop(ref)
            try:
                results[index] = ray.get(ref)
            except ray.exceptions.RayActorError as err:
                self._died(index, err)
                queue.appendleft((index, chunks[index]))
                continue
            except ray.exceptions.RayTaskError as err:
                raise_cause(err)
            self.idle.append(actor)
            emit(self.progress, "advance", "slides", steps=len(chunks[index]))
        return results

    def _died(self, index: int, err: BaseException) -> None:
        self.last_death = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        self.tries[index] += 1
        if self.tries[index] > self.retries:
            raise BalnmpError(f"a chunk of slides lost its worker {self.tries[index]} times (last: {self.last_death}); "
                              "the cache keeps what was finished and a re-run resumes")
        log.warning("a Ray worker died (%s); its chunk of slides goes to another worker", self.last_death)


def _worker_resources(ray: ModuleType, options: EngineOptions) -> tuple[int, float]:
    gpus = options.num_gpus_per_worker
    if gpus is None:
        gpus = 1.0 if cluster_gpus(ray) >= 1 else 0.0
    workers = options.workers or fitting_workers(ray, options.cpus_per_worker, gpus)
    return workers, gpus


def run_extract_ray(
    config: ExtractConfig, options: EngineOptions, *, progress: ProgressCallback | None = None
) -> Any:
    """Extract ``config``'s slides (of its shard) on a Ray cluster; the result of a local run, merged.

    Raises:
        ConfigError: the ``ray`` extra is missing, bad settings; BalnmpError: every worker died, or a
            chunk lost its worker more than ``options.retries`` times.
    """
    from balnmp_cache.extract.plan import resolve_jobs

    require("ray")  # before any work: one line saying how to install it
    t0 = time.perf_counter()
    jobs = resolve_jobs(config)
    with connected(options) as ray:
        workers, gpus = _worker_resources(ray, options)
        chunks = chunk_jobs(jobs, workers, options.chunk_slides)
        workers = min(workers, len(chunks))
        log.info("extracting %d slide(s) in %d chunk(s) on %d Ray worker(s) (%g CPU, %g GPU each)",
                 len(jobs), len(chunks), workers, options.cpus_per_worker, gpus)
        remote = ray.remote(EncoderWorker).options(num_cpus=options.cpus_per_worker, num_gpus=gpus, max_restarts=0)
        actors = [remote.remote(os.getcwd(), config) for _ in range(workers)]
        pool = _Pool(ray, actors, options.retries, progress)
        emit(progress, "start", "slides", total=len(jobs))
        parts = pool.run(chunks)
        for _ in range(options.retries):
            busy = [i for i, part in enumerate(parts) if part.n_busy]
            if not busy:
                break
            time.sleep(_BUSY_PAUSE_S)  # a lock of a process that is going away
            again = pool.run([chunks[i] for i in busy])
            for i, part in zip(busy, again, strict=True):
                parts[i] = _settled(parts[i], part)
        emit(progress, "end", "slides")
        for actor in actors:
            ray.kill(actor)
    return merge_results(parts, time.perf_counter() - t0)


def _settled(first: Any, again: Any) -> Any:
    """A chunk's result once its busy slides ran again: both passes' work, the first pass's skipped slides."""
    done = {row.slide_id for row in first.rows}
    merged = merge_results([first, again], first.seconds + again.seconds)
    merged.rows = [*first.rows, *(row for row in again.rows if row.slide_id not in done)]
    merged.n_skipped, merged.n_busy = first.n_skipped, again.n_busy
    return merged
