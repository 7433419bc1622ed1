"""The nuclei stage's reader: slides in, filtered uint8 patches out, on a background thread, one slide
at a time in the order they are submitted.

A :class:`PatchStream` runs one producer thread over the slides it is given. For each slide it
opens a reader, plans the resolution, builds the candidate grid (annotated regions, else tissue
detection), reads candidates in grid-ordered batches (cuCIM's batch API where available), paints
outside-polygon pixels white, applies the patch filter and puts the kept patches on a bounded
queue, so segmentation runs while the next patches are decoded. It tiles exactly as extract does
(the same readers, plans, grids and filter); extract's own reader
(:mod:`balnmp_cache.extract.stream`) additionally claims slides and feeds batches that span them.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.errors import BalnmpError, SlideError
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.extract.filters import PatchFilter
from balnmp_cache.slides import (
    PatchCandidates,
    ResolutionPlan,
    SlideJob,
    SlideReader,
    apply_masks,
    clip_regions,
    load_regions,
    open_slide,
    parse_patch_name,
    patch_key,
    plan_resolution,
    region_candidates,
    tissue_candidates,
)

__all__ = ["PatchBatch", "PatchStream", "SlideDone", "SlideFailed", "SlideInfo"]

log = logging.getLogger(__name__)

_QUEUE_BATCHES = 6  # read-ahead, in reader batches


@dataclass
class SlideInfo:
    """What the reader learnt about a slide; stored as provenance attributes."""

    attrs: dict[str, Any] = field(default_factory=dict)
    n_candidates: int = 0
    notes: list[str] = field(default_factory=list)
    setup_seconds: float = 0.0  # opening, planning and the candidate grid, before the first read


@dataclass
class PatchBatch:
    """Kept patches of one slide: (B, patch_px, patch_px, 3) uint8 and their positions and keys."""

    job: SlideJob
    patches: np.ndarray
    coords: np.ndarray  # (B, 2) int64 level-0 top-left
    region_id: np.ndarray  # (B,) int32
    patch_key: list[str]
    read_seconds: float


@dataclass
class SlideDone:
    """All of a slide's batches have been sent."""

    job: SlideJob
    info: SlideInfo


@dataclass
class SlideFailed:
    """The slide could not be read; ``reason`` is one line for the manifest."""

    job: SlideJob
    reason: str


_Item = PatchBatch | SlideDone | SlideFailed


def _resize(patches: np.ndarray, px: int) -> np.ndarray:
    """(B, h, w, 3) uint8 -> (B, px, px, 3) with PIL's antialiased bilinear resize."""
    from PIL import Image

    if patches.shape[1] == px and patches.shape[2] == px:
        return patches
    return np.stack([np.asarray(Image.fromarray(p).resize((px, px), Image.Resampling.BILINEAR)) for p in patches])


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if isinstance(err, BalnmpError):
        return text or type(err).__name__
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class PatchStream:
    """Read slides on a background thread; :meth:`get` returns :data:`_Item` values in slide order.

    Args:
        config: the extraction configuration (patch size, resolution, batch size, threads).
        patch_filter: decides which read patches are kept (pre-cut patches are all kept).
    """

    def __init__(self, config: ExtractConfig, patch_filter: PatchFilter) -> None:
        self.config = config
        self.patch_filter = patch_filter
        self._jobs: queue.Queue[SlideJob | None] = queue.Queue()
        self._items: queue.Queue[_Item | None] = queue.Queue(maxsize=_QUEUE_BATCHES)
        self._stop = threading.Event()
        _preload_readers()  # cuCIM's import mutes fds 1/2 briefly: do it before other threads log
        self._thread = threading.Thread(target=self._run, name="balnmp-reader", daemon=True)
        self._thread.start()

    # -- producer ---------------------------------------------------------------------------
    def submit(self, job: SlideJob) -> None:
        """Queue a slide for reading (the caller holds its lock)."""
        self._jobs.put(job)

    def close(self) -> None:
        """Stop after the queued slides; pending items are discarded."""
        self._stop.set()
        self._jobs.put(None)
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._items.get(timeout=0.1)
        self._thread.join()

    def _put(self, item: _Item | None) -> bool:
        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None or self._stop.is_set():
                self._put(None)  # tells the consumer that no more items come
                return
            info = SlideInfo()
            try:
                produce = self._precut_patches if job.kind == "patches" else self._slide_patches
                for batch in produce(job, info):
                    if not self._put(batch):
                        return
            except Exception as err:  # one slide's failure must not stop the run
                log.debug("reading %s failed", job.path, exc_info=True)
                if not self._put(SlideFailed(job, _one_line(err))):
                    return
                continue
            if not self._put(SlideDone(job, info)):
                return

    def _slide_patches(self, job: SlideJob, info: SlideInfo) -> Iterator[PatchBatch]:
        config = self.config
        t_open = time.perf_counter()
        with open_slide(job.path, num_workers=config.num_workers) as reader:
            plan = plan_resolution(
                reader,
                patch_px=config.patch_px,
                target_mpp=config.target_mpp,
                magnification=config.magnification,
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
                yield PatchBatch(
                    job=job,
                    patches=patches[keep],
                    coords=candidates.level0_xy[kept],
                    region_id=candidates.region_id[kept],
                    patch_key=[candidates.patch_key[i] for i in kept.tolist()],
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

    def _precut_patches(self, job: SlideJob, info: SlideInfo) -> Iterator[PatchBatch]:
        """BCNB ``patches/<pid>/<pid>_<region>_<x>_<y>.jpg``: embed exactly these, keyed by their official path."""
        from PIL import Image

        config = self.config
        origins = _region_origins(job)
        info.n_candidates = len(job.patch_files)
        mpp = job.mpp or config.slide_mpp
        info.attrs.update(
            reader="pil",
            level=0,
            downsample=1.0,
            patch_level0_px=config.patch_px,
            mpp=float("nan") if mpp is None else float(mpp),
            mpp_source="none" if job.mpp is None and config.slide_mpp is None else "override",
            magnification=float("nan"),
            slide_width=-1,
            slide_height=-1,
            roi_source="pre-cut BCNB patches",
            coords_frame="level0" if origins is not None else "region_offset",
        )
        if origins is None:
            info.notes.append("no WSIs/<pid>.json beside the patches: coords are offsets inside each region's bbox")

        def load(path: Path) -> np.ndarray:
            with Image.open(path) as image:
                rgb = image.convert("RGB")
                if rgb.size != (config.patch_px, config.patch_px):
                    rgb = rgb.resize((config.patch_px, config.patch_px), Image.Resampling.BILINEAR)
                return np.asarray(rgb)

        with ThreadPoolExecutor(max_workers=config.num_workers) as pool:
            for start in range(0, len(job.patch_files), config.batch_size):
                t0 = time.perf_counter()
                files = job.patch_files[start : start + config.batch_size]
                patches = np.stack(list(pool.map(load, files)))
                parsed = [parse_patch_name(f) for f in files]
                region = np.array([p[1] for p in parsed], dtype=np.int32)
                offsets = np.array([(p[2], p[3]) for p in parsed], dtype=np.int64)
                if origins is not None:
                    missing = sorted({int(r) for r in region} - set(origins))
                    if missing:
                        raise SlideError(
                            f"patches of {job.slide_id} name regions {missing} that its WSIs/{job.slide_id}.json lacks"
                        )
                    offsets = offsets + np.array([origins[int(r)] for r in region], dtype=np.int64)
                yield PatchBatch(
                    job=job,
                    patches=patches,
                    coords=offsets,
                    region_id=region,
                    patch_key=[patch_key(f) for f in files],
                    read_seconds=time.perf_counter() - t0,
                )

    # -- consumer ---------------------------------------------------------------------------
    def get(self) -> _Item:
        """The next item (blocks)."""
        item = self._items.get()
        if item is None:
            raise RuntimeError("the reader thread stopped")
        return item


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


def _region_origins(job: SlideJob) -> dict[int, tuple[int, int]] | None:
    """Region id -> level-0 corner of each polygon's official crop, from the BCNB ``WSIs/<pid>.json``.

    Looked up beside the patches folder's parent (``<root>/patches`` + ``<root>/WSIs``) and one level
    higher (``<root>/paper_patches/patches``). The corner is the minimum of the polygon's vertices,
    clamped at 0 (upstream issue #6), which is also the origin the tiler uses (``Region.origin``).
    """
    patches_dir = job.path.parent
    candidates = [
        patches_dir.parent / "WSIs" / f"{job.slide_id}.json",
        patches_dir.parent.parent / "WSIs" / f"{job.slide_id}.json",
    ]
    annotation = next((c for c in candidates if c.is_file()), None)
    if annotation is None:
        return None
    origins = {}
    for region in load_regions(annotation):
        corner = np.maximum(np.rint(region.vertices).min(axis=0), 0).astype(np.int64)
        origins[region.region_id] = (int(corner[0]), int(corner[1]))
    return origins
