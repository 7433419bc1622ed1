"""One slide through the segmenter: its batches from the reader thread, segmented, measured, written.

:class:`SlideNuclei` is called with the first item of each slide the reader thread claimed, and takes
the slide's items up to its end (:class:`SlideDone` or :class:`SlideFailed`, which hands on its lock).
It never raises for a bad slide: a read, segmentation or write failure is a ``failed`` manifest row, a
slide without an analysed patch an ``empty`` one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.cache import ManifestRow
from balnmp_cache.errors import BalnmpError
from balnmp_cache.extract.filters import PatchFilter
from balnmp_cache.extract.fingerprint import source_fingerprint
from balnmp_cache.extract.precut import Batch
from balnmp_cache.extract.stream import PatchStream, SlideDone, SlideFailed, SlideInfo
from balnmp_cache.nuclei.measure import measure_batch, unit_names
from balnmp_cache.nuclei.segmenters import Segmenter
from balnmp_cache.nuclei.tables import TableDir
from balnmp_cache.slides import SlideJob

if TYPE_CHECKING:
    from balnmp_cache.nuclei.config import NucleiConfig

__all__ = ["SlideNuclei", "SlideOutcome"]

log = logging.getLogger(__name__)


@dataclass
class _Collected:
    """A slide's measured batches as they arrive."""

    nuclei: list[dict[str, np.ndarray]] = field(default_factory=list)
    patches: list[dict[str, Any]] = field(default_factory=list)
    n_patches: int = 0
    physical: bool | None = None
    failure: str | None = None
    info: SlideInfo | None = None
    lock: Any = None
    compute_seconds: float = 0.0


@dataclass
class SlideOutcome:
    """A processed slide: its manifest row, nuclei written, seconds segmenting and measuring, and its
    lock (held: the caller releases it once the row is recorded)."""

    row: ManifestRow
    n_nuclei: int
    compute_seconds: float
    lock: Any


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


@dataclass
class SlideNuclei:
    """Turns the next slide of ``stream`` into a nucleus table and a manifest row."""

    stream: PatchStream
    segmenter: Segmenter
    tables: TableDir
    config: NucleiConfig
    patch_filter: PatchFilter

    def __call__(self, first: Batch | SlideDone | SlideFailed) -> SlideOutcome:
        """Segment, measure and write the slide whose first item from the stream is ``first``."""
        started = time.perf_counter()
        job = first.job
        collected = self._collect(first)
        row, n_nuclei, compute_seconds = self._outcome(job, collected, started)
        return SlideOutcome(row, n_nuclei, compute_seconds, collected.lock)

    def _outcome(self, job: SlideJob, collected: _Collected, started: float) -> tuple[ManifestRow, int, float]:
        """(row, nuclei written, seconds segmenting and measuring) of the collected slide."""
        base: dict[str, Any] = {"slide_id": job.slide_id, "patient_id": job.patient_id, "source": str(job.path)}
        seconds = time.perf_counter() - started
        if collected.failure is not None or collected.info is None:
            return ManifestRow(**base, status="failed", reason=collected.failure or "", seconds=seconds), 0, 0.0
        if collected.n_patches == 0:
            reason = f"no patch kept ({self.patch_filter.describe()})"
            return ManifestRow(**base, status="empty", reason=reason, seconds=seconds), 0, 0.0
        try:
            n_nuclei = self._write(job, collected)
        except (BalnmpError, OSError, ValueError) as err:
            row = ManifestRow(**base, status="failed", reason=f"writing failed: {_first_line(err)}", seconds=seconds)
            return row, 0, collected.compute_seconds
        log.info("%s: %d nuclei in %d patches", job.slide_id, n_nuclei, collected.n_patches)
        seconds = time.perf_counter() - started
        row = ManifestRow(**base, status="ok", n_patches=collected.n_patches, seconds=seconds)
        return row, n_nuclei, collected.compute_seconds

    def _collect(self, item: Batch | SlideDone | SlideFailed) -> _Collected:
        collected = _Collected()
        job = item.job
        while True:
            if isinstance(item, SlideFailed):
                collected.failure, collected.lock = item.reason, item.lock
                return collected
            if isinstance(item, SlideDone):
                collected.info, collected.lock = item.info, item.lock
                return collected
            if len(item.patches) and collected.failure is None:
                self._add(item, collected)
            following = self.stream.get()
            if not isinstance(following, Batch | SlideDone | SlideFailed) or following.job is not job:
                raise RuntimeError(f"reader thread out of order: {job.slide_id} ended without its end item")
            item = following

    def _add(self, item: Batch, collected: _Collected) -> None:
        """Segment and measure one batch of the slide into ``collected``."""
        from balnmp_cache.nuclei.stage import InfoBatch, level0_centroids, px_um_of

        if not isinstance(item, InfoBatch):
            return
        px_um, physical = px_um_of(item.info, self.config.fallback_mpp)
        t0 = time.perf_counter()
        try:
            labels = self.segmenter.segment(item.patches, px_um=px_um)
            measured = measure_batch(item.patches, labels, px_um=px_um if physical else None,
                                     min_patch_nuclei=self.config.min_patch_nuclei)  # fmt: skip
        except (RuntimeError, ValueError, MemoryError) as err:  # the slide's items are still drained
            collected.failure = f"segmentation failed: {type(err).__name__}: {_first_line(err)}"
            return
        collected.compute_seconds += time.perf_counter() - t0
        downsample = float(item.info.attrs.get("downsample", 1.0))
        nuclei = measured.nuclei
        local = nuclei.pop("patch")
        xy = level0_centroids(item.coords[local], nuclei.pop("x_px"), nuclei.pop("y_px"), downsample)
        keys = np.asarray(item.patch_key, dtype=object)
        collected.nuclei.append({"x": xy[:, 0], "y": xy[:, 1], "patch": local + collected.n_patches,
                                 "patch_key": keys[local], "region_id": item.region_id[local], **nuclei})
        collected.patches.append({"patch_key": list(item.patch_key), "x": item.coords[:, 0].tolist(),
                                  "y": item.coords[:, 1].tolist(), "region_id": item.region_id.tolist(),
                                  **{k: v.tolist() for k, v in measured.patches.items()}})  # fmt: skip
        collected.physical = physical
        collected.n_patches += len(item.patches)

    def _write(self, job: SlideJob, collected: _Collected) -> int:
        import pandas as pd

        nuclei = pd.DataFrame({k: np.concatenate([part[k] for part in collected.nuclei]) for k in collected.nuclei[0]})
        nuclei["patch"] = nuclei["patch"].astype(np.int32)
        nuclei["region_id"] = nuclei["region_id"].astype(np.int32)
        nuclei["patch_key"] = nuclei["patch_key"].astype(str)
        patches = pd.DataFrame({k: [v for part in collected.patches for v in part[k]] for k in collected.patches[0]})
        info = collected.info if collected.info is not None else SlideInfo()
        self.tables.write(job.slide_id, nuclei, patches, self._attrs(job, info, collected, len(nuclei)))
        return len(nuclei)

    def _attrs(self, job: SlideJob, slide: SlideInfo, collected: _Collected, n_nuclei: int) -> dict[str, Any]:
        from balnmp_cache import __version__

        info = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in slide.attrs.items()}
        physical = bool(collected.physical)
        return {
            **info, "slide_id": job.slide_id, "patient_id": job.patient_id, "source_path": str(job.path),
            "source_fingerprint": source_fingerprint(job), "segmenter": self.segmenter.identifier,
            "units": "um" if physical else "px", "columns": unit_names(physical), "n_patches": collected.n_patches,
            "n_nuclei": n_nuclei, "fallback_mpp": None if physical else self.config.fallback_mpp,
            "notes": "; ".join(slide.notes), "package_version": __version__,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }  # fmt: skip

