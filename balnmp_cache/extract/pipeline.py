"""Stage 1: slides -> one cached embedding per patch, complete, fast and crash-safe.

``run_extract`` resolves the sources into slides (keeping one shard of them with ``--shard I/N``),
learns the encoder's identity (from the record of an earlier run when it is still valid, else by
building the encoder: :mod:`~balnmp_cache.extract.identity`), derives the run's provenance (whence
the cache key), opens the cache directory, recovers what an interrupted run left and plans:

* a slide whose file is complete with this key and input is skipped (``--force`` redoes it): the
  completion index answers in a ``stat`` while the file is as it was written; otherwise the file is
  read through and its checksums checked, and a corrupt file is extracted again with a warning. A
  complete file of *another* source under the same slide id is never replaced: the slide fails with
  a reason naming ``--force`` and ``--slide-id-prefix`` (:meth:`CacheDir.cached_slide`);
* when nothing is left to do the run ends there, without importing torch;
* otherwise three threads work together: the reader claims each slide with its OS lock and reads and
  filters its patches (:class:`PatchStream`), the encoder loop runs full batches drawn from as many
  slides as needed (:class:`CohortEncoder`), and the writer writes each finished slide atomically and
  journals its manifest row while it still holds the slide's lock (:class:`SlideWriter`).

Everything about paths, headers, locks and the manifest is behind :class:`~balnmp_cache.cache.CacheDir`.
A failing slide never stops the run unless ``skip_errors`` is off; the result's ``exit_code`` is
non-zero when any slide failed or yielded no patch. A filesystem that refuses a write (full,
read-only, no permission, the cache folder gone) stops the run at once with one
:class:`~balnmp_cache.errors.StorageError`: every following slide would fail the same way. Its
temporary is removed and finished slides are untouched, so a re-run after the fix resumes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from balnmp_cache.cache import ManifestRow
from balnmp_cache.errors import BalnmpError, SlideError, StorageError
from balnmp_cache.extract.batches import CohortEncoder
from balnmp_cache.extract.claims import Claimer
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.extract.encode import BatchEncoder
from balnmp_cache.extract.filters import PatchFilter, patch_filter_for
from balnmp_cache.extract.plan import Plan, Session, failed_row, open_session, resolve_jobs
from balnmp_cache.extract.provenance import EXTRACTION_VERSION
from balnmp_cache.extract.stream import PatchStream, SlideSkipped
from balnmp_cache.extract.timings import StageTimes
from balnmp_cache.extract.writer import SlideWriter, Written
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.slides import SlideJob

__all__ = ["EXTRACTION_VERSION", "ExtractResult", "run_extract"]

log = logging.getLogger(__name__)


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
        n_batches: encoder batches run (all full but the last: batches span slides).
        seconds, setup_seconds: wall time; the part spent learning the encoder's identity (building it,
            loading and hashing its weights, or reading an earlier run's record).
        read_seconds: reading and decoding on the reader thread (overlapping the encoder).
        compute_seconds: host-to-device copies and forward passes of the encoded slides.
        times: every stage's seconds and the encoder's ``loader_wait`` (:class:`StageTimes`).
    """

    cache_dir: Path
    rows: list[ManifestRow] = field(default_factory=list)
    n_ok: int = 0
    n_failed: int = 0
    n_empty: int = 0
    n_skipped: int = 0
    n_busy: int = 0
    n_patches: int = 0
    n_batches: int = 0
    seconds: float = 0.0
    setup_seconds: float = 0.0
    read_seconds: float = 0.0
    compute_seconds: float = 0.0
    times: StageTimes = field(default_factory=StageTimes)

    @property
    def exit_code(self) -> int:
        """1 when any slide failed or yielded no patch, else 0."""
        return 1 if self.n_failed or self.n_empty else 0

    @property
    def loader_wait(self) -> float:
        """The share of the encoder loop's time spent waiting for input."""
        return self.times.loader_wait

    def add(self, written: Written) -> None:
        """Count one processed slide."""
        row = written.row
        self.rows.append(row)
        setattr(self, f"n_{row.status}", getattr(self, f"n_{row.status}") + 1)
        self.n_patches += row.n_patches
        self.read_seconds += written.times.read + written.times.decode
        self.compute_seconds += written.times.h2d + written.times.forward
        for name in ("read", "decode", "write"):
            setattr(self.times, name, getattr(self.times, name) + getattr(written.times, name))


def _log_outcome(row: ManifestRow) -> None:
    if row.status == "ok":
        log.info("%s: %d patches in %.1f s", row.slide_id, row.n_patches, row.seconds)
    elif row.status == "empty":
        log.warning("%s: %s", row.slide_id, row.reason)
    else:
        log.error("%s failed: %s", row.slide_id, row.reason)


class _Run:
    """The bookkeeping of the encoding part of a run: results, progress, the skip-errors rule."""

    def __init__(self, result: ExtractResult, config: ExtractConfig, progress: ProgressCallback | None) -> None:
        self.result, self.config, self.progress = result, config, progress
        self.writer: SlideWriter | None = None

    def written(self, done: list[Written]) -> None:
        result = self.result
        for written in done:
            result.add(written)
            _log_outcome(written.row)
            rate = result.n_patches / result.compute_seconds if result.compute_seconds else 0.0
            info = {"patches/s": rate, "read s": result.read_seconds, "encode s": result.compute_seconds}
            emit(self.progress, "advance", "slides", steps=1, info=info)
        for written in done:
            row = written.row
            if row.status == "failed" and not self.config.skip_errors:
                raise SlideError(
                    f"slide {row.slide_id} failed: {row.reason} (the run stops because of --no-skip-errors)"
                )

    def idle(self) -> None:
        if self.writer is not None:
            self.written(self.writer.finished())

    def skipped(self, item: SlideSkipped) -> None:
        status = item.claim.status
        if status == "busy":
            self.result.n_busy += 1
        elif status == "done":
            self.result.n_skipped += 1
        else:
            self.result.rows.append(failed_row(item.job, item.claim.reason))
            self.result.n_failed += 1
        emit(self.progress, "advance", "slides", steps=1)


def _encode_todo(session: Session, runner: BatchEncoder, patch_filter: PatchFilter, run: _Run) -> None:
    """Claim, read, encode and write the plan's slides (the three threads of the module docstring)."""
    config, cache = run.config, session.cache
    stream = PatchStream(config, patch_filter, session.plan.todo, Claimer(cache, config.force), decode=session.decode)
    writer = run.writer = SlideWriter(cache)
    loop = CohortEncoder(
        stream, runner, writer, session.provenance.attrs(cache.key or ""), patch_filter, dtype=cache.dtype,
        batch_size=config.batch_size, on_skipped=run.skipped, on_idle=run.idle,
    )
    try:
        times = loop.run()
        run.written(writer.close())
    except SlideError:  # --no-skip-errors: what is finished is still written
        stream.close()
        with contextlib.suppress(BalnmpError):
            run.written(writer.close())
        raise
    except BaseException:
        stream.close()
        writer.abort()
        raise
    finally:
        stream.close()
        for work in loop.works:  # ended by the reader, never handed to the writer
            if work.lock is not None:
                work.lock.release()
                work.lock = None
    for name in ("h2d", "forward", "wait", "loop"):
        setattr(run.result.times, name, getattr(times, name))
    run.result.n_batches = loop.n_batches


def _finish(session: Session, result: ExtractResult) -> None:
    cache, plan = session.cache, session.plan
    result.rows.extend(
        ManifestRow(slide_id=j.slide_id, patient_id=j.patient_id, source=str(j.path), status="ok",
                    reason="already complete", n_patches=cache.n_patches(j.slide_id))
        for j in plan.complete
    )
    cache.compact()


def _result(session: Session, setup_seconds: float) -> ExtractResult:
    plan: Plan = session.plan
    refused = plan.invalid + plan.conflicts
    return ExtractResult(
        cache_dir=session.cache.directory, rows=list(refused), n_failed=len(refused), n_skipped=len(plan.complete),
        setup_seconds=setup_seconds,
    )


def run_extract(
    config: ExtractConfig,
    *,
    progress: ProgressCallback | None = None,
    jobs: list[SlideJob] | None = None,
    encoder: BatchEncoder | None = None,
) -> ExtractResult:
    """Extract every slide of ``config.sources`` (of its shard) into the cache; see the module docstring.

    ``jobs`` (slides already resolved from ``config``) and ``encoder`` (built for ``config``) let a
    long-lived worker of :mod:`balnmp_cache.engines` extract one chunk of a cohort after another
    without resolving the sources or building the encoder again.

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
    jobs = resolve_jobs(config) if jobs is None else jobs
    patch_filter = patch_filter_for(config)
    session, runner, setup_seconds = open_session(config, jobs, patch_filter, encoder=encoder)
    cache = session.cache
    log.info("extracting %d slide(s) into %s with %s on %s (%d already complete)", len(jobs), cache.directory,
             session.identity.identifier, session.identity.device, len(session.plan.complete))
    result = _result(session, setup_seconds)
    emit(progress, "start", "slides", total=len(jobs))
    emit(progress, "advance", "slides", steps=len(session.plan.complete) + len(session.plan.conflicts),
         info={"skipped": len(session.plan.complete)})
    run = _Run(result, config, progress)
    try:
        if session.plan.todo:
            assert runner is not None  # open_session builds the encoder whenever slides remain
            _encode_todo(session, runner, patch_filter, run)
    except (StorageError, SlideError):
        with contextlib.suppress(BalnmpError, OSError):
            cache.compact()
        raise
    _finish(session, result)
    result.seconds = time.perf_counter() - t_start
    emit(progress, "end", "slides")
    log.info(
        "done: %d ok, %d skipped, %d empty, %d failed, %d busy; %d patches in %.1f s",
        result.n_ok, result.n_skipped, result.n_empty, result.n_failed, result.n_busy, result.n_patches, result.seconds,
    )
    if result.times.loop:
        log.info("time: %s", result.times.summary())
    return result
