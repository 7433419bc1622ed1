"""One slide on its way through the encoder: its patches as they arrive, its features as batches return,
and, once both are complete, its slide file and manifest row.

A :class:`SlideWork` is opened by the encoder loop at a slide's first item and is *ready* when the
reader has ended the slide (:class:`~balnmp_cache.extract.stream.SlideDone` or ``SlideFailed``) and
every kept patch has its features — which may take batches shared with other slides. Its
:meth:`~SlideWork.task` is what the writer thread needs: the slide's :class:`SlideFeatures` (or none:
a ``failed`` or ``empty`` row), the row, its lock. Building it never raises for a bad slide.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from balnmp_cache.cache import ManifestRow, SlideFeatures
from balnmp_cache.extract.filters import PatchFilter
from balnmp_cache.extract.fingerprint import source_fingerprint, source_state
from balnmp_cache.extract.precut import Batch
from balnmp_cache.extract.stream import SlideInfo
from balnmp_cache.extract.timings import StageTimes
from balnmp_cache.slides import SlideJob

__all__ = ["SlideWork", "WriteTask", "empty_reason", "first_line"]


def first_line(err: BaseException) -> str:
    text = str(err)
    return text.splitlines()[0] if text else ""


@dataclass
class WriteTask:
    """What the writer thread does for one slide: write ``features`` (when not ``None``) and record ``row``,
    then release ``lock``.

    Attributes:
        job: the slide.
        row: its manifest row (``ok`` when there are features to write).
        features: the slide file's contents, or ``None`` for a ``failed``/``empty`` row.
        lock: the slide's held OS lock (``None`` when not claimed: a refused slide id).
        source_state: the input files' state when the fingerprint was taken (for the completion index).
        times: the reader's and encoder's seconds spent on this slide.
        started: ``time.perf_counter()`` at the slide's first item (the row's ``seconds`` end at its write).
    """

    job: SlideJob
    row: ManifestRow
    features: SlideFeatures | None
    lock: Any
    source_state: str = ""
    times: StageTimes = field(default_factory=StageTimes)
    started: float = field(default_factory=time.perf_counter)


def empty_reason(info: SlideInfo, patch_filter: PatchFilter) -> str:
    """Why a slide yielded no patch, in one line."""
    if info.n_candidates == 0:
        reason = "no candidate patch: the annotated regions / detected tissue cover no grid cell"
    else:
        reason = (
            f"no patch kept: 0 of {info.n_candidates} candidate patches passed the filter ({patch_filter.describe()})"
        )
    if info.notes:
        reason += f"; {info.notes[0]}"
    return reason


@dataclass
class SlideWork:
    """A slide's kept patches (positions and keys) and their features, batch by batch, in order."""

    job: SlideJob
    started: float = field(default_factory=time.perf_counter)
    coords: list[np.ndarray] = field(default_factory=list)
    region_id: list[np.ndarray] = field(default_factory=list)
    patch_key: list[str] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    n_encoded: int = 0
    info: SlideInfo | None = None
    lock: Any = None
    ended: bool = False  # the reader has sent SlideDone or SlideFailed
    failure: str | None = None
    times: StageTimes = field(default_factory=StageTimes)

    @property
    def n_patches(self) -> int:
        return len(self.patch_key)

    @property
    def ready(self) -> bool:
        """The reader has ended the slide and every kept patch has been encoded (or it failed)."""
        return self.ended and (self.failure is not None or self.n_encoded == self.n_patches)

    def add_batch(self, batch: Batch) -> None:
        """Keep a reader batch's positions and keys (its pixels go to the encoder)."""
        self.coords.append(batch.coords)
        self.region_id.append(batch.region_id)
        self.patch_key.extend(batch.patch_key)
        self.times.read += batch.read_seconds
        self.times.decode += batch.decode_seconds

    def add_features(self, features: np.ndarray) -> None:
        """The next rows of this slide's features (stored dtype), in patch order."""
        if self.failure is None:
            self.features.append(features)
        self.n_encoded += len(features)

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason
        self.features = []

    def end(self, info: SlideInfo | None, lock: Any, failure: str | None = None) -> None:
        """The reader is done with this slide (``failure``: it could not be read)."""
        self.ended, self.info, self.lock = True, info, lock
        if info is not None:
            self.times.read += info.setup_seconds - info.decode_seconds
            self.times.decode += info.decode_seconds
        if failure is not None:
            self.fail(failure)

    def task(self, attrs: dict[str, Any], patch_filter: PatchFilter) -> WriteTask:
        """The writer's task for this (ready) slide; see the module docstring."""
        job = self.job
        base = dict(slide_id=job.slide_id, patient_id=job.patient_id, source=str(job.path))
        info = self.info
        if self.failure is not None or info is None:
            row = ManifestRow(**base, status="failed", reason=self.failure or "")  # type: ignore[arg-type]
            return WriteTask(job, row, None, self.lock, times=self.times, started=self.started)
        if self.n_patches == 0:
            row = ManifestRow(**base, status="empty", reason=empty_reason(info, patch_filter))  # type: ignore[arg-type]
            return WriteTask(job, row, None, self.lock, times=self.times, started=self.started)
        state = source_state(job)  # before the fingerprint: a change in between makes them disagree, never agree
        try:
            fingerprint = source_fingerprint(job)
        except OSError as err:
            row = ManifestRow(**base, status="failed", reason=f"reading the source failed: {first_line(err)}")  # type: ignore[arg-type]
            return WriteTask(job, row, None, self.lock, times=self.times, started=self.started)
        file_attrs = {  # an absolute source_path: a later run tells an edited source from another slide by it
            **attrs, **info.attrs, "patient_id": job.patient_id, "source_path": os.path.abspath(job.path),
            "source_fingerprint": fingerprint,
        }
        if info.notes:
            file_attrs["notes"] = "; ".join(info.notes)
        sf = SlideFeatures(
            slide_id=job.slide_id, features=np.concatenate(self.features),
            coords=np.concatenate(self.coords).astype(np.int64),
            region_id=np.concatenate(self.region_id).astype(np.int32),
            patch_key=np.array(self.patch_key, dtype=object), attrs=file_attrs,
        )
        row = ManifestRow(**base, status="ok", reason="; ".join(info.notes), n_patches=sf.n_patches)  # type: ignore[arg-type]
        return WriteTask(job, row, sf, self.lock, source_state=state, times=self.times, started=self.started)
