"""Stage 1: slides -> one cached embedding per patch, complete, fast and crash-safe.

``run_extract`` resolves the sources into slides, builds the encoder and the patch filter, derives
the run's provenance (whence the cache key), opens the cache directory and recovers what an
interrupted run left, and then, slide by slide:

* skips a slide whose file is complete with this key and input and whose arrays match their
  checksums (``--force`` redoes it); a corrupt file is extracted again with a warning, and a
  complete file of *another* source under the same slide id is never replaced: the slide fails
  with a reason naming ``--force`` and ``--slide-id-prefix`` (:meth:`CacheDir.cached_slide`);
* claims the slide with an OS lock, so two processes on one cache never write the same slide
  (:class:`Claimer`, which keeps a few slides queued on the reader thread);
* reads and filters patches on a background thread (:class:`PatchStream`) while the encoder runs;
* writes the slide atomically and records a manifest row (``ok``, ``failed`` or ``empty``, with a
  one-line reason) while it still holds the slide's lock.

Everything about paths, headers, locks and the manifest is behind :class:`~balnmp_cache.cache.CacheDir`.
A failing slide never stops the run unless ``skip_errors`` is off; the result's ``exit_code`` is
non-zero when any slide failed or yielded no patch. A filesystem that refuses a write (full,
read-only, no permission, the cache folder gone) stops the run at once with one
:class:`~balnmp_cache.errors.StorageError`: every following slide would fail the same way. Its
temporary is removed and finished slides are untouched, so a re-run after the fix resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from balnmp_cache.cache import CacheDir, ManifestRow
from balnmp_cache.cache.directory import CachedSlide
from balnmp_cache.config import save_resolved
from balnmp_cache.errors import BalnmpError, CacheError, ConfigError, SlideError, StorageError
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.extract.encode import BatchEncoder
from balnmp_cache.extract.filters import patch_filter_for
from balnmp_cache.extract.fingerprint import source_fingerprint
from balnmp_cache.extract.provenance import EXTRACTION_VERSION, Provenance, extract_provenance
from balnmp_cache.extract.slide import SlideExtractor, SlideOutcome
from balnmp_cache.extract.stream import PatchStream
from balnmp_cache.fsio import describe_os_error
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.slides import SlideJob, resolve_sources

__all__ = ["EXTRACTION_VERSION", "Claimer", "ExtractResult", "run_extract"]

log = logging.getLogger(__name__)

LOOKAHEAD_SLIDES = 2  # slides claimed and queued for reading ahead of the encoder (the current one included)


@dataclass
class ExtractResult:
    """What one ``extract`` run did.

    Attributes:
        cache_dir: the cache directory (``<out>/<encoder>-<mode>-<key>``).
        rows: this run's manifest rows (slides it processed, plus complete ones it skipped).
        n_ok, n_failed, n_empty: slides processed now, by outcome.
        n_skipped: slides already complete with this key.
        n_busy: slides another process was extracting at the same time (left to it).
        n_patches: patches encoded now.
        seconds, setup_seconds, read_seconds, compute_seconds: wall time; the part spent building the
            encoder (loading and hashing weights); time spent reading + filtering (on the reader
            thread, overlapping the encoder); time spent encoding.
    """

    cache_dir: Path
    rows: list[ManifestRow] = field(default_factory=list)
    n_ok: int = 0
    n_failed: int = 0
    n_empty: int = 0
    n_skipped: int = 0
    n_busy: int = 0
    n_patches: int = 0
    seconds: float = 0.0
    setup_seconds: float = 0.0
    read_seconds: float = 0.0
    compute_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """1 when any slide failed or yielded no patch, else 0."""
        return 1 if self.n_failed or self.n_empty else 0

    def add(self, outcome: SlideOutcome) -> None:
        """Count one processed slide."""
        row = outcome.row
        self.rows.append(row)
        setattr(self, f"n_{row.status}", getattr(self, f"n_{row.status}") + 1)
        self.n_patches += row.n_patches
        self.read_seconds += outcome.read_seconds
        self.compute_seconds += outcome.compute_seconds


@dataclass
class _Plan:
    """The slides of a run sorted before any is claimed."""

    todo: list[SlideJob] = field(default_factory=list)
    complete: list[SlideJob] = field(default_factory=list)
    invalid: list[ManifestRow] = field(default_factory=list)  # ids that cannot name a file (not in the manifest)
    conflicts: list[ManifestRow] = field(default_factory=list)  # ids another source's complete file holds


def _resolve_jobs(config: ExtractConfig) -> list[SlideJob]:
    if not config.sources:
        raise ConfigError("no SOURCE given: pass slides, folders, a BCNB root or a manifest CSV (or key 'sources')")
    jobs = resolve_sources(config.sources, prefer=config.prefer)
    if not jobs:
        raise ConfigError(f"no slides found in {', '.join(map(str, config.sources))}")
    if config.slide_id_prefix:
        jobs = [_with_prefix(job, config.slide_id_prefix) for job in jobs]
    return jobs


def _with_prefix(job: SlideJob, prefix: str) -> SlideJob:
    """``job`` under the slide id ``prefix + slide_id``; a patient id taken from the file name follows it.

    A manifest CSV's explicit patient id is kept; a patient id that is the slide id (folders, BCNB
    roots) gets the prefix too, so that ``1.jpg`` of two collections stays two patients.
    """
    patient_id = prefix + job.patient_id if job.patient_id == job.slide_id else job.patient_id
    return dataclasses.replace(job, slide_id=prefix + job.slide_id, patient_id=patient_id)


def _open_cache(config: ExtractConfig, runner: BatchEncoder, provenance: Provenance) -> CacheDir:
    """The run's cache directory with ``cache.json`` and ``config.toml``, cleaned after any crash.

    Raises:
        StorageError: the cache cannot be written there (full, read-only, no permission).
    """
    cache = CacheDir.create(
        config.out, provenance.key_params(), encoder=runner.encoder.name, mode=runner.encoder.mode,
        format=config.format, dtype=config.dtype,
    )
    try:
        save_resolved(config, cache.directory)
        cache.recover()
    except OSError as err:
        raise StorageError(f"{describe_os_error(err, cache.directory)} (opening the cache)") from err
    return cache


def _cached(cache: CacheDir, job: SlideJob, *, force: bool) -> CachedSlide:
    if force:
        return CachedSlide("redo")
    try:  # the fingerprint reads the slide's first and last MiB: only where a complete file exists
        return cache.cached_slide(job.slide_id, fingerprint=partial(source_fingerprint, job), source=job.path)
    except OSError as err:  # the source cannot be read: the reader thread fails the slide with its reason
        log.debug("fingerprint of %s failed: %s", job.slide_id, err)
        return CachedSlide("redo")


def _failed_row(job: SlideJob, reason: str) -> ManifestRow:
    return ManifestRow(slide_id=job.slide_id, patient_id=job.patient_id, source=str(job.path), status="failed",
                       reason=reason)


def _plan(jobs: Iterable[SlideJob], cache: CacheDir, *, force: bool) -> _Plan:
    plan = _Plan()
    for job in jobs:
        try:
            cache.check_slide_id(job.slide_id)
        except CacheError as err:
            plan.invalid.append(_failed_row(dataclasses.replace(job, slide_id=job.slide_id or "(empty)"), str(err)))
            log.error("%s", err)
            continue
        cached = _cached(cache, job, force=force)
        if cached.status == "done":
            plan.complete.append(job)
        elif cached.status == "conflict":
            plan.conflicts.append(_failed_row(job, cached.reason))
            log.error("%s failed: %s", job.slide_id, cached.reason)
        else:
            if cached.reason:
                log.warning("%s: %s; extracting it again", job.slide_id, cached.reason)
            plan.todo.append(job)
    return plan


class Claimer:
    """Claims the slides still to do, a few ahead of the encoder, and queues them on the reader thread.

    A slide is claimed by its OS lock; one another process holds is left to that process
    (:attr:`n_busy`), one finished by another process since the plan is skipped (:attr:`n_skipped`).
    The slide being encoded is ``pending[0]``; it stays claimed until :meth:`finish` releases it.
    """

    def __init__(
        self, todo: Iterable[SlideJob], cache: CacheDir, stream: PatchStream, *, force: bool,
        progress: ProgressCallback | None = None, lookahead: int = LOOKAHEAD_SLIDES,
    ) -> None:
        self._todo: Iterator[SlideJob] = iter(todo)
        self._cache, self._stream, self._force, self._progress = cache, stream, force, progress
        self._lookahead = lookahead
        self.pending: deque[tuple[SlideJob, Any]] = deque()  # (job, held lock), in reading order
        self.n_busy = 0
        self.n_skipped = 0
        self.conflicts: list[ManifestRow] = []  # another source's slide appeared under the id since the plan

    def fill(self) -> None:
        """Claim and submit slides until ``lookahead`` are pending or none is left."""
        while len(self.pending) < self._lookahead:
            job = next(self._todo, None)
            if job is None:
                return
            lock = self._cache.lock(job.slide_id)
            if lock is None:
                self.n_busy += 1
                log.info("%s is being extracted by another process; leaving it to that process", job.slide_id)
                emit(self._progress, "advance", "slides", steps=1)
                continue
            cached = _cached(self._cache, job, force=self._force)
            if cached.status in ("done", "conflict"):
                lock.release()  # finished by another process since the plan
                if cached.status == "done":
                    self.n_skipped += 1
                else:
                    self.conflicts.append(_failed_row(job, cached.reason))
                    log.error("%s failed: %s", job.slide_id, cached.reason)
                emit(self._progress, "advance", "slides", steps=1)
                continue
            self.pending.append((job, lock))
            self._stream.submit(job)

    def finish(self) -> None:
        """Release the current slide (``pending[0]``)."""
        _, lock = self.pending.popleft()
        lock.release()

    def release_all(self) -> None:
        """Release every slide still claimed (the run stops)."""
        while self.pending:
            self.finish()


def _log_outcome(row: ManifestRow) -> None:
    if row.status == "ok":
        log.info("%s: %d patches in %.1f s", row.slide_id, row.n_patches, row.seconds)
    elif row.status == "empty":
        log.warning("%s: %s", row.slide_id, row.reason)
    else:
        log.error("%s failed: %s", row.slide_id, row.reason)


def _extract_claimed(
    claimer: Claimer, extract: SlideExtractor, result: ExtractResult, *, skip_errors: bool,
    progress: ProgressCallback | None,
) -> None:
    """Extract the claimed slides one after the other, recording each row while the slide is still ours."""
    claimer.fill()
    while claimer.pending:
        job, _ = claimer.pending[0]
        try:
            outcome = extract(job)
            extract.cache.record([outcome.row])  # while the slide is still ours: no stale row can win
        except StorageError as err:  # full, read-only, gone: every following slide would fail the same way
            with contextlib.suppress(BalnmpError, OSError):  # the manifest may be just as unwritable
                extract.cache.record([_failed_row(job, f"writing failed: {err}")])
            raise
        finally:
            claimer.finish()
        result.add(outcome)
        _log_outcome(outcome.row)
        rate = result.n_patches / result.compute_seconds if result.compute_seconds else 0.0
        info = {"patches/s": rate, "read s": result.read_seconds, "encode s": result.compute_seconds}
        emit(progress, "advance", "slides", steps=1, info=info)
        if outcome.row.status == "failed" and not skip_errors:
            raise SlideError(
                f"slide {job.slide_id} failed: {outcome.row.reason} (the run stops because of --no-skip-errors)"
            )
        claimer.fill()


def run_extract(config: ExtractConfig, *, progress: ProgressCallback | None = None) -> ExtractResult:
    """Extract every slide of ``config.sources`` into the cache; see the module docstring.

    A slide whose id another source's complete file holds is a ``failed`` row of the result (and
    the exit code), not of ``manifest.csv``: the manifest describes the files, and that file is
    sound and stays as it was.

    Raises:
        ConfigError, EncoderError: bad settings, before any slide is touched.
        SlideError: a slide failed and ``config.skip_errors`` is off (its manifest row is written first).
        StorageError: the cache's filesystem refused a write (full, read-only, no permission, the
            folder gone): the run stops; finished slides are kept and a re-run resumes.
    """
    t_start = time.perf_counter()
    jobs = _resolve_jobs(config)
    runner = BatchEncoder.build(config)
    setup_seconds = time.perf_counter() - t_start
    patch_filter = patch_filter_for(config)
    provenance = extract_provenance(config, runner, patch_filter)
    cache = _open_cache(config, runner, provenance)
    log.info("extracting %d slide(s) into %s with %s on %s", len(jobs), cache.directory, runner.encoder.identifier, runner.device)
    plan = _plan(jobs, cache, force=config.force)
    refused = plan.invalid + plan.conflicts
    result = ExtractResult(
        cache_dir=cache.directory, rows=list(refused), n_failed=len(refused),
        n_skipped=len(plan.complete), setup_seconds=setup_seconds,
    )
    emit(progress, "start", "slides", total=len(jobs))
    emit(progress, "advance", "slides", steps=len(plan.complete) + len(plan.conflicts),
         info={"skipped": len(plan.complete)})

    stream = PatchStream(config, patch_filter)
    claimer = Claimer(plan.todo, cache, stream, force=config.force, progress=progress)
    extract = SlideExtractor(stream, runner, cache, provenance.attrs(cache.key), patch_filter)
    try:
        _extract_claimed(claimer, extract, result, skip_errors=config.skip_errors, progress=progress)
    finally:
        claimer.release_all()
        stream.close()
    result.n_busy, result.n_skipped = claimer.n_busy, result.n_skipped + claimer.n_skipped
    result.rows.extend(claimer.conflicts)
    result.n_failed += len(claimer.conflicts)
    result.rows.extend(
        ManifestRow(slide_id=j.slide_id, patient_id=j.patient_id, source=str(j.path), status="ok",
                    reason="already complete", n_patches=cache.n_patches(j.slide_id))
        for j in plan.complete
    )
    result.seconds = time.perf_counter() - t_start
    emit(progress, "end", "slides")
    log.info(
        "done: %d ok, %d skipped, %d empty, %d failed, %d busy; %d patches in %.1f s",
        result.n_ok, result.n_skipped, result.n_empty, result.n_failed, result.n_busy, result.n_patches, result.seconds,
    )
    return result
