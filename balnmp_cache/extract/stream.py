"""The reading side of stage 1: slides in, filtered uint8 patches out, on a background thread.

A :class:`PatchStream` runs one producer thread over the slides still to do. For each slide it
claims it (:class:`~balnmp_cache.extract.claims.Claimer`: the OS lock, the skip check again), opens
a reader, plans the resolution, builds the candidate grid (annotated regions, else tissue
detection), reads candidates in grid-ordered batches (cuCIM's batch API where available; plain
JPEGs decoded on the GPU with ``decode = cuda``), paints outside-polygon pixels white, applies the
patch filter and puts the kept patches on a queue bounded in *patches* (three encoder batches), so
the reader works ahead across as many slides as a batch needs, small or large. Items come out in
slide order; each slide ends with a :class:`SlideDone` or :class:`SlideFailed` that hands its lock
to the consumer.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from balnmp_cache.errors import BalnmpError, SlideError
from balnmp_cache.extract.claims import Claim
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.extract.filters import PatchFilter
from balnmp_cache.extract.precut import Batch, precut_attrs, precut_batches, region_origins
from balnmp_cache.slides import (
    PatchCandidates,
    ResolutionPlan,
    SlideJob,
    SlideReader,
    apply_masks,
    clip_regions,
    load_regions,
    open_slide,
    plan_resolution,
    region_candidates,
    tissue_candidates,
)

__all__ = ["Batch", "PatchStream", "SlideDone", "SlideFailed", "SlideInfo", "SlideSkipped", "StreamError"]

log = logging.getLogger(__name__)

QUEUE_BATCHES = 3  # read-ahead, in encoder batches of patches


@dataclass
class SlideInfo:
    """What the reader learnt about a slide; stored as provenance attributes."""

    attrs: dict[str, Any] = field(default_factory=dict)
    n_candidates: int = 0
    notes: list[str] = field(default_factory=list)
    setup_seconds: float = 0.0  # opening, planning and the candidate grid, before the first read
    decode_seconds: float = 0.0  # of setup_seconds: a whole JPEG slide decoded on the GPU


@dataclass
class SlideDone:
    """All of a slide's batches have been sent; ``lock`` (held) passes to the consumer."""

    job: SlideJob
    info: SlideInfo
    lock: Any


@dataclass
class SlideFailed:
    """The slide could not be read; ``reason`` is one line for the manifest; ``lock`` passes on."""

    job: SlideJob
    reason: str
    lock: Any


@dataclass
class SlideSkipped:
    """The slide was not claimed: ``busy`` (another process has it), ``done`` or ``conflict``."""

    job: SlideJob
    claim: Claim


@dataclass
class StreamError:
    """Claiming failed in a way that stops the run (a :class:`~balnmp_cache.errors.StorageError`)."""

    error: BaseException


Item = Batch | SlideDone | SlideFailed | SlideSkipped | StreamError


def _resize(patches: np.ndarray, px: int) -> np.ndarray:
    """(B, h, w, 3) uint8 -> (B, px, px, 3) with PIL's antialiased bilinear resize."""
    from PIL import Image

    if patches.shape[1] == px and patches.shape[2] == px:
        return patches
    resample = Image.Resampling.BILINEAR
    return np.stack([np.asarray(Image.fromarray(p).resize((px, px), resample)) for p in patches])


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, BalnmpError):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _size(item: Item) -> int:
    return len(item.patches) if isinstance(item, Batch) else 0


class _Queue:
    """A FIFO bounded by the patches it holds (an item that alone exceeds the bound still passes)."""

    def __init__(self, max_patches: int) -> None:
        self._items: deque[Item | None] = deque()
        self._patches = 0
        self._max = max_patches
        self._cond = threading.Condition()
        self.closed = False

    def put(self, item: Item | None) -> bool:
        """Append ``item``, waiting for room; False when the queue was closed meanwhile."""
        n = 0 if item is None else _size(item)
        with self._cond:
            while not self.closed and self._items and self._patches + n > self._max:
                self._cond.wait()
            if self.closed:
                return False
            self._items.append(item)
            self._patches += n
            self._cond.notify_all()
            return True

    def get(self) -> Item | None:
        with self._cond:
            while not self._items:
                self._cond.wait()
            item = self._items.popleft()
            self._patches -= 0 if item is None else _size(item)
            self._cond.notify_all()
            return item

    def close(self) -> list[Item | None]:
        """Refuse further puts; return what was still queued."""
        with self._cond:
            self.closed = True
            left, self._items = list(self._items), deque()
            self._patches = 0
            self._cond.notify_all()
            return left


class PatchStream:
    """Claim and read ``jobs`` on a background thread; :meth:`get` returns items in slide order.

    Args:
        config: the extraction configuration (patch size, resolution, batch size, threads).
        patch_filter: decides which read patches are kept (pre-cut patches are all kept).
        jobs: the slides to do, in order.
        claim: claims one slide (its lock and skip check), called on the reader thread.
        decode: ``cpu`` or ``cuda``: where JPEG patches and plain-JPEG slides are decoded.
    """

    def __init__(
        self, config: ExtractConfig, patch_filter: PatchFilter, jobs: Iterable[SlideJob],
        claim: Callable[[SlideJob], Claim], *, decode: str = "cpu",
    ) -> None:
        self.config, self.patch_filter, self.decode = config, patch_filter, decode
        self._jobs, self._claim = iter(jobs), claim
        self._queue = _Queue(max(QUEUE_BATCHES * config.batch_size, 1))
        self._held: dict[int, Any] = {}  # id(job) -> lock of slides claimed whose end item was not taken yet
        self._held_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=config.num_workers, thread_name_prefix="balnmp-read")
        _preload_readers()  # cuCIM's import mutes fds 1/2 briefly: do it before other threads log
        self._thread = threading.Thread(target=self._run, name="balnmp-reader", daemon=True)
        self._thread.start()

    # -- consumer ---------------------------------------------------------------------------
    def get(self) -> Item | None:
        """The next item (blocks); ``None`` once every slide has been sent."""
        item = self._queue.get()
        if isinstance(item, SlideDone | SlideFailed):
            with self._held_lock:
                self._held.pop(id(item.job), None)  # the consumer owns the lock now
        return item

    def close(self) -> None:
        """Stop reading; locks of slides not handed on are released, pending items discarded."""
        self._queue.close()
        self._thread.join()
        self._queue.close()
        self._pool.shutdown(wait=True)
        with self._held_lock:
            locks, self._held = list(self._held.values()), {}
        for lock in locks:
            lock.release()

    # -- producer ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            for job in self._jobs:
                if self._queue.closed or not self._one(job):
                    return
        except BaseException as err:  # a claim that cannot be made (the folder gone, the disk refusing)
            self._queue.put(StreamError(err))
            return
        self._queue.put(None)

    def _one(self, job: SlideJob) -> bool:
        claim = self._claim(job)
        if claim.status != "claimed":
            return self._queue.put(SlideSkipped(job, claim))
        with self._held_lock:
            self._held[id(job)] = claim.lock
        info = SlideInfo()
        try:
            produce = self._precut_patches if job.kind == "patches" else self._slide_patches
            for batch in produce(job, info):
                if not self._queue.put(batch):
                    return False
        except Exception as err:  # one slide's failure must not stop the run
            log.debug("reading %s failed", job.path, exc_info=True)
            return self._queue.put(SlideFailed(job, _one_line(err), claim.lock))
        return self._queue.put(SlideDone(job, info, claim.lock))

    def _open(self, job: SlideJob, info: SlideInfo) -> SlideReader:
        if self.decode == "cuda":
            from balnmp_cache.extract.gpu_decode import open_on_gpu

            t0 = time.perf_counter()
            reader = open_on_gpu(job.path, num_workers=self.config.num_workers)
            if reader is not None:
                if reader.backend == "nvjpeg":  # decoded whole on opening
                    info.decode_seconds = time.perf_counter() - t0
                return reader
        return open_slide(job.path, num_workers=self.config.num_workers)

    def _slide_patches(self, job: SlideJob, info: SlideInfo) -> Iterator[Batch]:
        config = self.config
        t_open = time.perf_counter()
        with self._open(job, info) as reader:
            plan = plan_resolution(
                reader, patch_px=config.patch_px, target_mpp=config.target_mpp, magnification=config.magnification,
                slide_mpp=job.mpp if job.mpp is not None else config.slide_mpp,
            )
            info.attrs.update(_plan_attrs(reader, plan))
            candidates = self._candidates(job, reader, plan, info)
            info.n_candidates = len(candidates)
            info.setup_seconds = time.perf_counter() - t_open
            size = (plan.read_px, plan.read_px)
            for start in range(0, len(candidates), config.batch_size):
                t0 = time.perf_counter()
                index = np.arange(start, min(start + config.batch_size, len(candidates)))
                xys = [tuple(xy) for xy in candidates.level0_xy[index].tolist()]
                patches = _resize(reader.read_regions(xys, plan.read_level, size), plan.patch_px)
                apply_masks(patches, candidates, index)
                keep = self.patch_filter.keep(patches)
                kept = index[keep]
                yield Batch(
                    job=job, patches=patches[keep], coords=candidates.level0_xy[kept],
                    region_id=candidates.region_id[kept], patch_key=[candidates.patch_key[i] for i in kept.tolist()],
                    read_seconds=time.perf_counter() - t0,
                )

    def _candidates(self, job: SlideJob, reader: SlideReader, plan: ResolutionPlan, info: SlideInfo) -> PatchCandidates:
        """The grid inside the annotated regions, else over the detected tissue; notes ``roi_source``."""
        geometry = dict(
            patch_px=plan.patch_px, patch_level0_px=plan.patch_level0_px,
            read_level=plan.read_level, read_px=plan.read_px
        )
        if job.annotation is None:
            info.attrs["roi_source"] = "tissue detection (Otsu on saturation)"
            return tissue_candidates(reader, min_tissue=self.config.min_tissue, slide_id=job.slide_id, **geometry)
        width, height = reader.dimensions
        regions, warnings = clip_regions(load_regions(job.annotation), width=width, height=height)
        info.notes.extend(warnings)
        for warning in warnings:
            log.warning("%s: %s", job.slide_id, warning)
        if not regions:
            raise SlideError(f"every annotated region of {job.annotation.name} lies outside the {width}x{height} image")
        info.attrs["roi_source"] = str(job.annotation)
        max_outside = self.patch_filter.max_outside
        return region_candidates(regions, slide_id=job.slide_id, max_outside=max_outside, **geometry)

    def _precut_patches(self, job: SlideJob, info: SlideInfo) -> Iterator[Batch]:
        """BCNB ``patches/<pid>/<pid>_<region>_<x>_<y>.jpg``: embed exactly these, keyed by their official path."""
        origins = region_origins(job)
        info.n_candidates = len(job.patch_files)
        info.attrs.update(precut_attrs(job, self.config, level0=origins is not None))
        if origins is None:
            info.notes.append("no WSIs/<pid>.json beside the patches: coords are offsets inside each region's bbox")
        yield from precut_batches(job, self.config, self._pool, origins=origins, on_gpu=self.decode == "cuda")


def _plan_attrs(reader: SlideReader, plan: ResolutionPlan) -> dict[str, Any]:
    """The slide's size, reader and read resolution as attributes (NaN for an unknown MPP or power)."""
    width, height = reader.dimensions
    return dict(
        reader=reader.backend,
        slide_width=int(width),
        slide_height=int(height),
        level=plan.read_level,
        downsample=plan.downsample,
        patch_level0_px=plan.patch_level0_px,
        mpp=float("nan") if plan.mpp is None else plan.mpp,
        mpp_source=plan.mpp_source,
        magnification=float("nan") if plan.magnification is None else plan.magnification,
        coords_frame="level0",
    )


def _preload_readers() -> None:
    from balnmp_cache.slides.backends import import_cucim

    with contextlib.suppress(ImportError):  # cuCIM is optional at run time; open_slide falls back to the others
        import_cucim()
