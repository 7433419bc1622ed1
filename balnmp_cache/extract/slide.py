"""One slide through the encoder: its batches from the reader thread, encoded, assembled and written.

:class:`SlideExtractor` is called once per claimed slide, in the order the slides were submitted
to the :class:`~balnmp_cache.extract.stream.PatchStream`. It returns the slide's manifest row and
the time spent; it never raises for a bad slide (a read, encode or write failure is a ``failed``
row, no kept patch an ``empty`` one). A filesystem that refuses the write (full, read-only, no
permission, the folder gone) is not the slide's fault and raises
:class:`~balnmp_cache.errors.StorageError`, which stops the run.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from balnmp_cache.cache import CacheDir, ManifestRow, SlideFeatures
from balnmp_cache.errors import BalnmpError, StorageError
from balnmp_cache.extract.encode import BatchEncoder
from balnmp_cache.extract.filters import PatchFilter
from balnmp_cache.extract.fingerprint import source_fingerprint
from balnmp_cache.extract.stream import PatchBatch, PatchStream, SlideDone, SlideFailed, SlideInfo
from balnmp_cache.slides import SlideJob

__all__ = ["SlideExtractor", "SlideOutcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlideOutcome:
    """What became of one slide: its manifest row, and the seconds spent reading (on the reader
    thread, overlapping the encoder) and encoding."""

    row: ManifestRow
    read_seconds: float = 0.0
    compute_seconds: float = 0.0


def _first_line(err: BaseException) -> str:
    text = str(err)
    return text.splitlines()[0] if text else ""


@dataclass
class _Encoded:
    """A slide's encoded batches as they arrive, then how its reading ended."""

    job: SlideJob
    started: float = field(default_factory=time.perf_counter)
    features: list[np.ndarray] = field(default_factory=list)
    coords: list[np.ndarray] = field(default_factory=list)
    region_id: list[np.ndarray] = field(default_factory=list)
    patch_key: list[str] = field(default_factory=list)
    info: SlideInfo | None = None
    failure: str | None = None
    read_seconds: float = 0.0
    compute_seconds: float = 0.0

    def add(self, batch: PatchBatch, features: np.ndarray) -> None:
        self.features.append(features)
        self.coords.append(batch.coords)
        self.region_id.append(batch.region_id)
        self.patch_key.extend(batch.patch_key)

    @property
    def n_patches(self) -> int:
        return len(self.patch_key)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def slide_features(self, attrs: dict[str, Any]) -> SlideFeatures:
        return SlideFeatures(
            slide_id=self.job.slide_id,
            features=np.concatenate(self.features),
            coords=np.concatenate(self.coords).astype(np.int64),
            region_id=np.concatenate(self.region_id).astype(np.int32),
            patch_key=np.array(self.patch_key, dtype=object),
            attrs=attrs,
        )


@dataclass
class SlideExtractor:
    """Turns the next slide of ``stream`` into a slide file in ``cache`` and a manifest row.

    Attributes:
        stream: the reader thread, holding the slides submitted so far.
        runner: the built encoder.
        cache: where slide files are written.
        attrs: the run's provenance attributes (``cache_key`` included), stored with every slide.
        patch_filter: the filter the reader applied (named in the reason of an ``empty`` slide).
    """

    stream: PatchStream
    runner: BatchEncoder
    cache: CacheDir
    attrs: dict[str, Any]
    patch_filter: PatchFilter

    def __call__(self, job: SlideJob) -> SlideOutcome:
        """Consume ``job``'s items from the stream, encode them, write the slide; its outcome."""
        encoded = self._encode(job)
        return SlideOutcome(self._finish(encoded), encoded.read_seconds, encoded.compute_seconds)

    def _encode(self, job: SlideJob) -> _Encoded:
        encoded = _Encoded(job)
        stored = np.dtype(self.cache.dtype)
        while True:
            item = self.stream.get()
            if item.job.slide_id != job.slide_id:  # the stream serves slides in the order submitted
                raise RuntimeError(f"reader thread out of order: expected {job.slide_id}, got {item.job.slide_id}")
            if isinstance(item, SlideFailed):
                encoded.failure = item.reason
                return encoded
            if isinstance(item, SlideDone):
                encoded.read_seconds += item.info.setup_seconds
                encoded.info = item.info
                return encoded
            encoded.read_seconds += item.read_seconds
            if len(item.patches) and encoded.failure is None:
                t0 = time.perf_counter()
                try:
                    # cast on arrival: a slide's buffer holds stored-dtype bytes, not float32 ones
                    encoded.add(item, self.runner(item.patches).astype(stored, copy=False))
                except (RuntimeError, ValueError, MemoryError) as err:  # keep draining this slide's items
                    encoded.failure = f"encoding failed: {type(err).__name__}: {_first_line(err)}"
                    log.debug("encoding %s failed", job.slide_id, exc_info=True)
                encoded.compute_seconds += time.perf_counter() - t0

    def _finish(self, encoded: _Encoded) -> ManifestRow:
        job = encoded.job
        base = dict(slide_id=job.slide_id, patient_id=job.patient_id, source=str(job.path))
        if encoded.failure is not None or encoded.info is None:
            return ManifestRow(**base, status="failed", reason=encoded.failure or "", seconds=encoded.seconds)
        info = encoded.info
        if encoded.n_patches == 0:
            return ManifestRow(**base, status="empty", reason=self._empty_reason(info), seconds=encoded.seconds)
        attrs = {  # an absolute source_path: a later run tells an edited source from another slide by it
            **self.attrs, **info.attrs, "patient_id": job.patient_id, "source_path": os.path.abspath(job.path),
            "source_fingerprint": source_fingerprint(job),
        }
        if info.notes:
            attrs["notes"] = "; ".join(info.notes)
        sf = encoded.slide_features(attrs)
        try:
            self.cache.write(sf)
        except StorageError:  # full, read-only, gone: not this slide's fault, and the next would fail too
            raise
        except (BalnmpError, OSError) as err:  # e.g. NaN/inf features: this slide fails alone
            reason = f"writing failed: {_first_line(err)}"
            return ManifestRow(**base, status="failed", reason=reason, seconds=encoded.seconds)
        reason = "; ".join(info.notes)
        return ManifestRow(**base, status="ok", reason=reason, n_patches=sf.n_patches, seconds=encoded.seconds)

    def _empty_reason(self, info: SlideInfo) -> str:
        if info.n_candidates == 0:
            reason = "no candidate patch: the annotated regions / detected tissue cover no grid cell"
        else:
            reason = (
                f"no patch kept: 0 of {info.n_candidates} candidate patches passed the filter "
                f"({self.patch_filter.describe()})"
            )
        if info.notes:
            reason += f"; {info.notes[0]}"
        return reason
