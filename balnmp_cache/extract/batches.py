"""The encoder loop: full batches drawn from as many slides as needed, features split back per slide.

The reader thread sends each slide's kept patches in reader batches, slide after slide. The loop
keeps a FIFO of patches not yet encoded and runs the encoder on exactly ``batch_size`` of them at a
time, whichever slides they come from (a cohort of small slides fills a batch from several; a large
slide spans several batches); only the last batch of the run may be smaller. The features of a batch
go back to their slides in order (:class:`~balnmp_cache.extract.slide.SlideWork`), and a slide is
handed to the writer thread once the reader has ended it and all its patches are encoded.

Batch composition is deterministic for a given list of slides to do. A resumed run (or a chunk of a
cohort on a Ray worker) has a shorter list, so a patch may share its batch with other patches than in
an uninterrupted run: on the CPU (oneDNN) a patch's features are bit-identical whatever its neighbours
and its place in the batch, but not always whatever the batch's size (oneDNN picks kernels by shape:
on some CPUs, one thread or two, a 1x1 convolution of a short batch differs in the last bits), so the
last, short batch of a run is padded with blank patches to ``batch_size`` on the CPU. With the same
``batch_size`` a resumed cache then equals an uninterrupted one byte for byte
(``tests/extract/test_batching.py``). On a GPU, cuDNN may pick other kernels for other batch shapes
(``cudnn.benchmark``), so features agree within float noise, not bit for bit, as they already did
across runs.

A batch that fails to encode (e.g. out of memory) fails every slide with a patch in it, and the loop
goes on with the next batch.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from balnmp_cache.extract.encode import BatchEncoder, Pending
from balnmp_cache.extract.filters import PatchFilter
from balnmp_cache.extract.precut import Batch
from balnmp_cache.extract.slide import SlideWork, first_line
from balnmp_cache.extract.stream import PatchStream, SlideDone, SlideFailed, SlideSkipped, StreamError
from balnmp_cache.extract.timings import StageTimes
from balnmp_cache.extract.writer import SlideWriter

__all__ = ["CohortEncoder"]

log = logging.getLogger(__name__)

_Segment = tuple[SlideWork, int]  # a slide and how many of a batch's rows are its patches


class CohortEncoder:
    """Runs the encoder loop of one extract run over ``stream``, handing finished slides to ``writer``.

    Args:
        stream: the reader thread.
        runner: the built encoder.
        writer: the writer thread.
        attrs: the run's provenance attributes (``cache_key`` included), stored with every slide.
        patch_filter: the reader's filter (named in the reason of an ``empty`` slide).
        dtype: the stored features dtype (features are cast as they arrive).
        batch_size: patches per encoder batch.
        on_skipped: called with each slide the reader did not claim.
        on_idle: called between items (the caller drains the writer's finished slides there).
    """

    def __init__(
        self, stream: PatchStream, runner: BatchEncoder, writer: SlideWriter, attrs: dict[str, Any],
        patch_filter: PatchFilter, *, dtype: str, batch_size: int, on_skipped: Callable[[SlideSkipped], None],
        on_idle: Callable[[], None],
    ) -> None:
        self.stream, self.runner, self.writer = stream, runner, writer
        self.attrs, self.patch_filter = attrs, patch_filter
        self.stored = np.dtype(dtype)
        self.batch_size = batch_size
        self.on_skipped, self.on_idle = on_skipped, on_idle
        self.works: deque[SlideWork] = deque()  # open slides, in stream order
        self.buffer: deque[tuple[SlideWork, Any]] = deque()  # patches not yet encoded, in order
        self.buffered = 0
        self.pending: tuple[Pending, list[_Segment]] | None = None
        self.times = StageTimes()
        self.n_batches = 0

    def run(self) -> StageTimes:
        """Encode every slide of the stream; returns the encoder loop's seconds (h2d, forward, wait, loop).

        Raises:
            StorageError: claiming or writing hit a filesystem that refuses writes.
        """
        t_loop = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            item = self.stream.get()
            self.times.wait += time.perf_counter() - t0
            if item is None:
                break
            if isinstance(item, StreamError):
                raise item.error
            self._take(item)
            self.on_idle()
        while self.buffered:
            self._encode(self._next_batch())
        self._collect()
        self._hand_on()
        self.times.loop += time.perf_counter() - t_loop
        return self.times

    # -- items ------------------------------------------------------------------------------
    def _work(self, item: Batch | SlideDone | SlideFailed) -> SlideWork:
        if self.works and self.works[-1].job is item.job and not self.works[-1].ended:
            return self.works[-1]
        work = SlideWork(item.job)
        self.works.append(work)
        return work

    def _take(self, item: Batch | SlideDone | SlideFailed | SlideSkipped) -> None:
        if isinstance(item, SlideSkipped):
            self.on_skipped(item)
            return
        work = self._work(item)
        if isinstance(item, Batch):
            work.add_batch(item)
            if len(item.patches):
                self.buffer.append((work, item.patches))
                self.buffered += len(item.patches)
            while self.buffered >= self.batch_size:
                self._encode(self._next_batch())
        elif isinstance(item, SlideFailed):
            work.end(None, item.lock, failure=item.reason)
            self._drop(work)
        else:
            work.end(item.info, item.lock)
        self._hand_on()

    def _drop(self, work: SlideWork) -> None:
        """Forget the failed slide's patches that are not encoded yet."""
        kept = deque((w, p) for w, p in self.buffer if w is not work)
        dropped = sum(len(p) for w, p in self.buffer if w is work)
        self.buffer, self.buffered = kept, self.buffered - dropped
        work.n_encoded += dropped

    # -- batches ----------------------------------------------------------------------------
    def _next_batch(self) -> list[tuple[SlideWork, Any]]:
        """The first ``batch_size`` buffered patches (fewer at the end), as (slide, patches) parts."""
        parts, need = [], self.batch_size
        while need and self.buffer:
            work, patches = self.buffer.popleft()
            if len(patches) > need:
                self.buffer.appendleft((work, patches[need:]))
                patches = patches[:need]
            parts.append((work, patches))
            need -= len(patches)
        self.buffered -= sum(len(p) for _, p in parts)
        return parts

    def _encode(self, parts: list[tuple[SlideWork, Any]]) -> None:
        segments = [(work, len(patches)) for work, patches in parts]
        self.n_batches += 1
        try:
            pending: Pending | None = self.runner.submit([patches for _, patches in parts], pad_to=self.batch_size)
        except (RuntimeError, ValueError, MemoryError) as err:
            self._fail(segments, err)
            pending = None
        self._collect()  # the previous batch, while this one runs on the GPU
        if pending is not None:
            self.pending = (pending, segments)

    def _collect(self) -> None:
        if self.pending is None:
            return
        (pending, segments), self.pending = self.pending, None
        try:
            features = pending.result().astype(self.stored, copy=False)  # cast on arrival: stored-dtype bytes
        except (RuntimeError, ValueError, MemoryError) as err:
            self._fail(segments, err)
            return
        self.times.h2d += pending.h2d_seconds
        self.times.forward += pending.forward_seconds
        row = 0
        for work, n in segments:
            work.add_features(features[row : row + n])
            work.times.h2d += pending.h2d_seconds * n / pending.n
            work.times.forward += pending.forward_seconds * n / pending.n
            row += n
        self._hand_on()

    def _fail(self, segments: list[_Segment], err: BaseException) -> None:
        reason = f"encoding failed: {type(err).__name__}: {first_line(err)}"
        log.debug("encoding a batch of %s failed", [w.job.slide_id for w, _ in segments], exc_info=True)
        for work, n in segments:
            work.fail(reason)
            work.n_encoded += n

    def _hand_on(self) -> None:
        """Send the finished slides at the front to the writer, in order."""
        while self.works and self.works[0].ready:
            work = self.works.popleft()
            self.writer.submit(work.task(self.attrs, self.patch_filter))
