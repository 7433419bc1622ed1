"""``balnmp-cache nuclei``: sources -> patches -> nuclei -> one table per slide, then the histogram bags.

The patches are exactly extract's (same sources, tiling, filters, resolution; its reader thread,
:class:`~balnmp_cache.extract.stream.PatchStream`), so a nucleus's patch key is the key of the same patch
in a feature cache. The reader thread claims each slide by its OS lock in the tables folder just before
reading it (:class:`_TableClaimer`; a slide another process holds is left to it, one it finished
meanwhile is skipped), and slides are segmented while the next patches are read; each slide's table is
written atomically and its manifest row recorded while it is still held. A complete table of the same
key and input is skipped on re-run.
``--shard I/N`` (0-based) takes one size-balanced part of the slides
(:func:`~balnmp_cache.shards.select_shard`, weighted by :func:`job_weight`). When every slide has its
table, the histogram bag cache and ``summaries.csv`` are (re)built (:mod:`balnmp_cache.nuclei.bags`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.cache import ManifestRow
from balnmp_cache.config import save_resolved
from balnmp_cache.errors import BalnmpError, ConfigError
from balnmp_cache.extract.claims import Claim
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.extract.filters import patch_filter_for
from balnmp_cache.extract.fingerprint import source_fingerprint
from balnmp_cache.extract.precut import Batch
from balnmp_cache.extract.stream import PatchStream, SlideInfo, SlideSkipped, StreamError
from balnmp_cache.nuclei.config import NucleiConfig
from balnmp_cache.nuclei.segmenters import Segmenter, create_segmenter
from balnmp_cache.nuclei.slide import SlideNuclei, SlideOutcome
from balnmp_cache.nuclei.tables import TableDir
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.shards import parse_shard, select_shard
from balnmp_cache.slides import SlideJob, resolve_sources

__all__ = ["NUCLEI_VERSION", "NucleiResult", "job_weight", "run_nuclei"]

log = logging.getLogger(__name__)

NUCLEI_VERSION = 1
"""Bumped when the measurements change for the same settings (part of the key)."""

_READING = ("patch_px", "target_mpp", "magnification", "slide_mpp", "patch_filter", "white_ratio_max",
            "background_max", "min_tissue", "prefer", "batch_size", "num_workers")  # fmt: skip


@dataclass
class NucleiResult:
    """What one ``nuclei`` run did (data only; the CLI renders it).

    Attributes:
        out: the output root; tables_dir: the tables folder; bags_dir: the bag cache (``None`` if not built).
        rows: manifest rows of this run's slides (processed now or already complete).
        n_ok, n_failed, n_empty, n_skipped, n_busy: slides by outcome.
        n_patches, n_nuclei: analysed now; seconds / compute_seconds: wall time / segmenting and measuring.
        shard: (I, N), 0-based; notes: sentences for the user (e.g. why the bags were not built).
    """

    out: Path
    tables_dir: Path
    bags_dir: Path | None = None
    rows: list[ManifestRow] = field(default_factory=list)
    n_ok: int = 0
    n_failed: int = 0
    n_empty: int = 0
    n_skipped: int = 0
    n_busy: int = 0
    n_patches: int = 0
    n_nuclei: int = 0
    seconds: float = 0.0
    compute_seconds: float = 0.0
    shard: tuple[int, int] = (0, 1)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when any slide failed or had no patch, else 0."""
        return 1 if self.n_failed or self.n_empty else 0


class _InfoStream(PatchStream):
    """extract's reader thread, each batch paired with its slide's :class:`SlideInfo`.

    The reader fills the info (MPP, downsample) before the first batch; the segmenter needs it per batch.
    """

    def _slide_patches(self, job: SlideJob, info: SlideInfo) -> Iterator[Batch]:
        return _tagged(super()._slide_patches(job, info), info)

    def _precut_patches(self, job: SlideJob, info: SlideInfo) -> Iterator[Batch]:
        return _tagged(super()._precut_patches(job, info), info)


@dataclass(kw_only=True)
class InfoBatch(Batch):
    """A :class:`Batch` with the :class:`SlideInfo` of its slide."""

    info: SlideInfo


def _tagged(batches: Iterator[Batch], info: SlideInfo) -> Iterator[Batch]:
    for batch in batches:
        yield InfoBatch(**vars(batch), info=info)


def reading_config(config: NucleiConfig) -> ExtractConfig:
    """The extract configuration that reads the same patches (its reading fields only)."""
    return ExtractConfig(sources=list(config.sources), **{name: getattr(config, name) for name in _READING})


def table_params(config: NucleiConfig, segmenter: Segmenter, reading: ExtractConfig) -> dict[str, Any]:
    """Everything that changes a table's bytes: hashed into the tables' key and written to ``cache.json``."""
    return {
        "stage": "nuclei", "nuclei_version": NUCLEI_VERSION, "segmenter": segmenter.identifier,
        "segmenter_settings": segmenter.settings(), "patch_px": reading.patch_px, "target_mpp": reading.target_mpp,
        "magnification": reading.magnification, "slide_mpp": reading.slide_mpp, "min_tissue": reading.min_tissue,
        **patch_filter_for(reading).provenance(), "fallback_mpp": config.fallback_mpp,
        "min_patch_nuclei": config.min_patch_nuclei,
    }  # fmt: skip


def _jobs(config: NucleiConfig) -> list[SlideJob]:
    if not config.sources:
        raise ConfigError("no SOURCE given: pass slides, folders, a BCNB root or a manifest CSV (or key 'sources')")
    jobs = resolve_sources(config.sources, prefer=config.prefer)
    if not jobs:
        raise ConfigError(f"no slides found in {', '.join(map(str, config.sources))}")
    return jobs


def job_weight(job: SlideJob) -> float:
    """A slide's expected cost for ``--shard``: its pre-cut patch files, else the bytes of its file(s)."""
    if job.patch_files:
        return float(len(job.patch_files))
    path = Path(job.path)
    try:
        if path.is_dir():
            return float(sum(p.stat().st_size for p in path.iterdir() if p.is_file()))
        return float(path.stat().st_size)
    except OSError:
        return 0.0


@dataclass
class _TableClaimer:
    """Claims a slide of ``tables`` on the reader thread: its OS lock, then the skip check again."""

    tables: TableDir
    force: bool

    def __call__(self, job: SlideJob) -> Claim:
        lock = self.tables.lock(job.slide_id)
        if lock is None:
            log.info("%s is being segmented by another process; leaving it to that process", job.slide_id)
            return Claim("busy")
        if not self.force and self.tables.is_done(job.slide_id, partial(source_fingerprint, job)):
            lock.release()  # finished by another process since the plan
            return Claim("done")
        return Claim("claimed", lock)


def _claimed(stream: PatchStream, worker: SlideNuclei, tables: TableDir, result: NucleiResult, *,
             config: NucleiConfig, progress: ProgressCallback | None) -> None:
    """Process the claimed slides in stream order, recording each row while the slide is still held."""
    while (item := stream.get()) is not None:
        if isinstance(item, StreamError):
            raise item.error
        if isinstance(item, SlideSkipped):
            if item.claim.status == "busy":
                result.n_busy += 1
            else:
                result.n_skipped += 1
            emit(progress, "advance", "slides", steps=1)
            continue
        outcome: SlideOutcome = worker(item)
        try:
            tables.record([outcome.row])
        finally:
            outcome.lock.release()
        row = outcome.row
        result.rows.append(row)
        setattr(result, f"n_{row.status}", getattr(result, f"n_{row.status}") + 1)
        result.n_patches += row.n_patches
        result.n_nuclei += outcome.n_nuclei
        result.compute_seconds += outcome.compute_seconds
        rate = result.n_patches / result.compute_seconds if result.compute_seconds else 0.0
        emit(progress, "advance", "slides", steps=1, info={"patches/s": rate, "nuclei": result.n_nuclei})
        if row.status == "failed":
            log.error("%s failed: %s", row.slide_id, row.reason)
            if not config.skip_errors:
                raise BalnmpError(f"slide {row.slide_id} failed: {row.reason} (the run stops: --no-skip-errors)")


def run_nuclei(config: NucleiConfig, *, progress: ProgressCallback | None = None) -> NucleiResult:
    """Segment and measure every slide of ``config.sources`` (this shard's part); see the module docstring.

    Raises:
        ConfigError, NucleiError: bad settings or segmenter, before any slide is touched.
    """
    started = time.perf_counter()
    all_jobs = _jobs(config)
    index, count = parse_shard(config.shard) if config.shard else (0, 1)
    jobs = select_shard(all_jobs, index, count, weight=job_weight)
    segmenter = create_segmenter(config)
    reading = reading_config(config)
    params = table_params(config, segmenter, reading)
    tables = TableDir.create(Path(config.out) / "tables", params, segmenter=segmenter.name)
    save_resolved(config, tables.directory)
    tables.recover()
    result = NucleiResult(out=Path(config.out), tables_dir=tables.directory, shard=(index, count))
    todo = []
    for job in jobs:
        if not config.force and tables.is_done(job.slide_id, partial(source_fingerprint, job)):
            result.n_skipped += 1
            result.rows.append(ManifestRow(slide_id=job.slide_id, patient_id=job.patient_id, source=str(job.path),
                                           status="ok", reason="already complete", n_patches=0))  # fmt: skip
        else:
            todo.append(job)
    log.info("nuclei: %d of %d slide(s) to do (shard %d/%d) with %s into %s", len(todo), len(jobs), index, count,
             segmenter.identifier, tables.directory)  # fmt: skip
    emit(progress, "start", "slides", total=len(jobs))
    emit(progress, "advance", "slides", steps=result.n_skipped)
    patch_filter = patch_filter_for(reading)
    stream = _InfoStream(reading, patch_filter, todo, _TableClaimer(tables, config.force))
    worker = SlideNuclei(stream, segmenter, tables, config=config, patch_filter=patch_filter)
    try:
        _claimed(stream, worker, tables, result, config=config, progress=progress)
    except BaseException:
        stream.close()
        with contextlib.suppress(BalnmpError, OSError):  # the rows recorded so far reach manifest.csv
            tables.compact()
        raise
    stream.close()
    tables.compact()
    emit(progress, "end", "slides")
    _finish(config, all_jobs, tables, result)
    result.seconds = time.perf_counter() - started
    return result


def _finish(config: NucleiConfig, all_jobs: list[SlideJob], tables: TableDir, result: NucleiResult) -> None:
    """Build the bags when every slide of the sources has a table; say why not otherwise."""
    if not config.bags:
        return
    missing = [job.slide_id for job in all_jobs if not tables.is_complete(job.slide_id)]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        result.notes.append(
            f"bags not built: {len(missing)} slide(s) have no table yet ({shown}); they are built by the run "
            "that completes the last one (or re-run without --shard)"
        )
        return
    from balnmp_cache.nuclei.bags import build_bags

    outcome = build_bags(tables, all_jobs, config=config)
    result.bags_dir = outcome.directory
    result.notes.extend(outcome.notes)


def px_um_of(info: SlideInfo, fallback_mpp: float) -> tuple[float, bool]:
    """(µm per patch pixel for the segmenter's settings, whether it is the slide's own)."""
    mpp = float(info.attrs.get("mpp", math.nan))
    if math.isfinite(mpp) and mpp > 0:
        return mpp, True
    return fallback_mpp, False


def level0_centroids(coords: np.ndarray, x_px: np.ndarray, y_px: np.ndarray, downsample: float) -> np.ndarray:
    """(n, 2) level-0 x, y of patch-pixel centroids: pixel i of a patch at ``coords`` covers
    [coords + i * downsample, coords + (i + 1) * downsample) level-0 pixels."""
    return np.column_stack([coords[:, 0] + (x_px + 0.5) * downsample - 0.5,
                            coords[:, 1] + (y_px + 0.5) * downsample - 0.5])  # fmt: skip
