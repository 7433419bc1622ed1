"""Slide files and manifest rows written off the encoder's path, on one writer thread.

The encoder loop hands each finished slide to :meth:`SlideWriter.submit`; the writer thread builds
its HDF5/Zarr image, writes and fsyncs it, renames it into place, journals its manifest row with its
completion-index entry (:meth:`~balnmp_cache.cache.CacheDir.commit`) and only then releases the
slide's lock, so a row is always recorded while the slide is still ours. The queue is bounded in
slides and in feature bytes: a writer that falls behind (a slow disk) makes ``submit`` wait
(back-pressure) instead of letting finished slides pile up in memory.

Errors stay per slide: a slide whose file cannot be written (NaN/inf features, an attribute that
cannot be stored) becomes a ``failed`` row and the run goes on. A filesystem that refuses the write
(:class:`~balnmp_cache.errors.StorageError`: full, read-only, gone) stops the writer: that slide's
``failed`` row is recorded when the manifest can still be written, the slides queued after it are
released unwritten, and the error is raised on the encoder's thread at its next ``submit`` or at
:meth:`close`, as one line.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from balnmp_cache.cache import CacheDir, ManifestRow
from balnmp_cache.errors import BalnmpError, StorageError
from balnmp_cache.extract.slide import WriteTask, first_line
from balnmp_cache.extract.timings import StageTimes

__all__ = ["MAX_QUEUED_BYTES", "MAX_QUEUED_SLIDES", "SlideWriter", "Written"]

log = logging.getLogger(__name__)

MAX_QUEUED_SLIDES = 16
MAX_QUEUED_BYTES = 1 << 30  # features of queued slides


@dataclass(frozen=True)
class Written:
    """A slide the writer has finished: its final row and the seconds spent on it by each stage."""

    row: ManifestRow
    times: StageTimes


def _bytes(task: WriteTask) -> int:
    return 0 if task.features is None else int(task.features.features.nbytes)


class SlideWriter:
    """The writer thread of one run (see the module docstring)."""

    def __init__(
        self, cache: CacheDir, *, max_slides: int = MAX_QUEUED_SLIDES, max_bytes: int = MAX_QUEUED_BYTES
    ) -> None:
        self.cache = cache
        self._tasks: deque[WriteTask | None] = deque()
        self._queued_bytes = 0
        self._max_slides, self._max_bytes = max_slides, max_bytes
        self._cond = threading.Condition()
        self._done: deque[Written] = deque()
        self.error: StorageError | None = None
        self._thread = threading.Thread(target=self._run, name="balnmp-writer", daemon=True)
        self._thread.start()

    # -- the encoder's side -----------------------------------------------------------------
    def submit(self, task: WriteTask) -> None:
        """Queue one slide, waiting while the queue is full.

        Raises:
            StorageError: the writer stopped on a filesystem that refuses writes (``task`` is released).
        """
        size = _bytes(task)
        with self._cond:
            while self.error is None and self._tasks and (
                len(self._tasks) >= self._max_slides or self._queued_bytes + size > self._max_bytes
            ):
                self._cond.wait()
            if self.error is None:
                self._tasks.append(task)
                self._queued_bytes += size
                self._cond.notify_all()
                return
        _release(task)
        raise self.error

    def finished(self) -> list[Written]:
        """The slides written since the last call (never blocks)."""
        with self._cond:
            out, self._done = list(self._done), deque()
        return out

    def close(self) -> list[Written]:
        """Write what is queued, stop the thread and return the slides finished since :meth:`finished`.

        Raises:
            StorageError: the writer stopped on a filesystem that refuses writes.
        """
        with self._cond:
            self._tasks.append(None)
            self._cond.notify_all()
        self._thread.join()
        done = self.finished()
        if self.error is not None:
            raise self.error
        return done

    def abort(self) -> None:
        """Stop after the slide being written; queued slides are released unwritten."""
        with self._cond:
            dropped, self._tasks = list(self._tasks), deque([None])
            self._cond.notify_all()
        for task in dropped:
            if task is not None:
                _release(task)
        self._thread.join()

    # -- the writer thread ------------------------------------------------------------------
    def _next(self) -> WriteTask | None:
        with self._cond:
            while not self._tasks:
                self._cond.wait()
            task = self._tasks.popleft()
            if task is not None:
                self._queued_bytes -= _bytes(task)
            self._cond.notify_all()
            return task

    def _run(self) -> None:
        while (task := self._next()) is not None:
            if self.error is not None:
                _release(task)
                continue
            t0 = time.perf_counter()
            try:
                row = self._write(task)
            except StorageError as err:
                with self._cond:
                    self.error = err
                    self._cond.notify_all()
                continue
            except BaseException as err:  # a bug must not leave the encoder waiting on a dead thread
                log.exception("the writer thread failed on %s", task.job.slide_id)
                with self._cond:
                    self.error = StorageError(f"writing slide '{task.job.slide_id}' failed: {first_line(err)}")
                    self._cond.notify_all()
                continue
            finally:
                _release(task)
            times = dataclasses.replace(task.times, write=time.perf_counter() - t0)
            with self._cond:
                self._done.append(Written(row, times))

    def _write(self, task: WriteTask) -> ManifestRow:
        """Write one slide and record its row; a slide that cannot be written alone becomes a ``failed`` row."""
        row = task.row
        if task.features is not None:
            try:
                timed = _timed(row, task)
                self.cache.commit(task.features, timed, source_state=task.source_state)
                return timed
            except StorageError as err:  # full, read-only, gone: not this slide's fault, and the next would fail too
                failed = dataclasses.replace(row, status="failed", reason=f"writing failed: {err}", n_patches=0)
                with contextlib.suppress(BalnmpError, OSError):  # the manifest may be just as unwritable
                    self.cache.record([_timed(failed, task)])
                raise
            except (BalnmpError, OSError) as err:  # e.g. NaN/inf features: this slide fails alone
                reason = f"writing failed: {first_line(err)}"
                row = dataclasses.replace(row, status="failed", reason=reason, n_patches=0)
        row = _timed(row, task)
        self.cache.record([row])
        return row


def _timed(row: ManifestRow, task: WriteTask) -> ManifestRow:
    return dataclasses.replace(row, seconds=time.perf_counter() - task.started)


def _release(task: WriteTask) -> None:
    if task.lock is not None:
        with contextlib.suppress(Exception):
            task.lock.release()
        task.lock = None
