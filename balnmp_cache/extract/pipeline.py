"""Stage 1: slides -> one cached embedding per patch, complete, fast and crash-safe.

``run_extract`` resolves the sources into slides, builds the encoder, derives the cache key from
everything that changes the bytes, and then, slide by slide:

* skips a slide whose file is complete with this key (``--force`` redoes it);
* claims the slide with an OS lock, so two processes on one cache never write the same slide;
* reads and filters patches on a background thread (:class:`PatchStream`) while the encoder runs;
* writes the slide atomically (temporary name, rename when complete) and records a manifest row
  (``ok``, ``failed`` or ``empty``, with a one-line reason).

A failing slide never stops the run unless ``skip_errors`` is off; the result's ``exit_code`` is
non-zero when any slide failed or yielded no patch.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.cache import (
    SCHEMA_VERSION,
    ManifestRow,
    SlideFeatures,
    cache_dir_name,
    cache_key,
    clean_stale_temporaries,
    is_complete,
    read_manifest,
    slide_path,
    update_manifest,
    write_cache_json,
    write_slide,
)
from balnmp_cache.cache.locks import slide_lock_path, try_lock
from balnmp_cache.config import save_resolved
from balnmp_cache.cache.naming import check_slide_id
from balnmp_cache.errors import BalnmpError, CacheError, ConfigError, SlideError
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.extract.encode import BatchEncoder
from balnmp_cache.extract.fingerprint import source_fingerprint
from balnmp_cache.extract.stream import PatchBatch, PatchStream, SlideDone, SlideFailed
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.slides import SlideJob, resolve_sources

__all__ = ["EXTRACTION_VERSION", "ExtractResult", "run_extract"]

log = logging.getLogger(__name__)

EXTRACTION_VERSION = 1
"""Bumped whenever tiling, filtering or preprocessing changes the bytes for the same settings."""

_LOOKAHEAD_SLIDES = 2  # slides claimed and queued for reading ahead of the encoder


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


def key_params(config: ExtractConfig, runner: BatchEncoder) -> dict[str, Any]:
    """Everything that changes the cached bytes; hashed into the cache key."""
    encoder = runner.encoder
    params: dict[str, Any] = {
        "device": runner.device,
        "precision": runner.precision,
        "schema_version": SCHEMA_VERSION,
        "extraction_version": EXTRACTION_VERSION,
        "encoder_identifier": encoder.identifier,
        "mode": encoder.mode,
        "dtype": config.dtype,
        "format": config.format,
        "input_px": encoder.spec.input_px,
        "norm_mean": list(encoder.spec.mean),
        "norm_std": list(encoder.spec.std),
        "patch_px": config.patch_px,
        "target_mpp": config.target_mpp,
        "magnification": config.magnification,
        "patch_filter": config.patch_filter,
        "min_tissue": config.min_tissue,
    }
    if config.patch_filter == "white_ratio":
        params["white_ratio_max"] = config.white_ratio_max
    else:
        params["background_max"] = config.background_max
    if config.target_mpp is not None or config.magnification is not None:
        params["slide_mpp"] = config.slide_mpp  # an override changes the grid only when resampling
    return params


def _common_attrs(config: ExtractConfig, runner: BatchEncoder, key: str) -> dict[str, Any]:
    encoder = runner.encoder
    return {
        "device": runner.device,
        "precision": runner.precision,
        "encoder": encoder.name,
        "encoder_identifier": encoder.identifier,
        "weights": encoder.weights,
        "weights_sha256": encoder.weights_sha256,
        "random_weights": bool(encoder.random_weights),
        "mode": encoder.mode,
        "input_px": encoder.spec.input_px,
        "norm_mean": [float(v) for v in encoder.spec.mean],
        "norm_std": [float(v) for v in encoder.spec.std],
        "patch_px": config.patch_px,
        "patch_filter": config.patch_filter,
        "white_ratio_max": config.white_ratio_max,
        "cache_key": key,
        "extraction_version": EXTRACTION_VERSION,
    }


class _SlideBuffer:
    """Features of one slide as its batches are encoded."""

    def __init__(self, job: SlideJob) -> None:
        self.job = job
        self.started = time.perf_counter()
        self.features: list[np.ndarray] = []
        self.coords: list[np.ndarray] = []
        self.region_id: list[np.ndarray] = []
        self.patch_key: list[str] = []

    def add(self, batch: PatchBatch, features: np.ndarray) -> None:
        self.features.append(features)
        self.coords.append(batch.coords)
        self.region_id.append(batch.region_id)
        self.patch_key.extend(batch.patch_key)

    @property
    def n_patches(self) -> int:
        return len(self.patch_key)


def _resolve_jobs(config: ExtractConfig) -> list[SlideJob]:
    if not config.sources:
        raise ConfigError("no SOURCE given: pass slides, folders, a BCNB root or a manifest CSV (or key 'sources')")
    jobs = resolve_sources(config.sources, prefer=config.prefer)
    if not jobs:
        raise ConfigError(f"no slides found in {', '.join(map(str, config.sources))}")
    return jobs


def _recover_rows(cache_dir: Path, done: list[SlideJob], format: str) -> list[ManifestRow]:
    """Manifest rows for complete files whose row was lost (a crash between rename and manifest update)."""
    from balnmp_cache.cache.slide import read_header

    have = {row.slide_id for row in read_manifest(cache_dir) if row.status == "ok"}
    rows = []
    for job in done:
        if job.slide_id not in have:
            n = int(read_header(slide_path(cache_dir, job.slide_id, format)).attrs["n_patches"])
            rows.append(ManifestRow(slide_id=job.slide_id, patient_id=job.patient_id, source=str(job.path), status="ok", n_patches=n))
    return rows


def run_extract(config: ExtractConfig, *, progress: ProgressCallback | None = None) -> ExtractResult:
    """Extract every slide of ``config.sources`` into the cache; see the module docstring.

    Raises:
        ConfigError, EncoderError: bad settings, before any slide is touched.
        SlideError: a slide failed and ``config.skip_errors`` is off (its manifest row is written first).
    """
    t_start = time.perf_counter()
    jobs = _resolve_jobs(config)
    encoder = BatchEncoder.build(config)
    setup_seconds = time.perf_counter() - t_start
    params = key_params(config, encoder)
    key = cache_key(params)
    cache_dir = Path(config.out) / cache_dir_name(encoder.encoder.name, encoder.encoder.mode, key)
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(config, cache_dir)
    write_cache_json(cache_dir, params)
    for path in clean_stale_temporaries(cache_dir):
        log.info("removed a temporary left by an interrupted run: %s", path.name)
    result = ExtractResult(cache_dir=cache_dir, setup_seconds=setup_seconds)
    common = _common_attrs(config, encoder, key)
    log.info("extracting %d slide(s) into %s with %s on %s", len(jobs), cache_dir, encoder.encoder.identifier, encoder.device)

    todo: list[SlideJob] = []
    complete: list[SlideJob] = []
    for job in jobs:
        try:
            check_slide_id(job.slide_id)
        except CacheError as err:
            row = ManifestRow(slide_id=job.slide_id or "(empty)", patient_id=job.patient_id, source=str(job.path),
                              status="failed", reason=str(err))
            result.rows.append(row)
            result.n_failed += 1
            log.error("%s", err)
            continue
        if _is_done(cache_dir, job, config, key):
            complete.append(job)
        else:
            todo.append(job)
    result.n_skipped = len(complete)
    recovered = _recover_rows(cache_dir, complete, config.format)
    if recovered:
        update_manifest(cache_dir, recovered)
    emit(progress, "start", "slides", total=len(jobs))
    emit(progress, "advance", "slides", steps=len(complete), info={"skipped": len(complete)})

    stream = PatchStream(config)
    pending: deque[tuple[SlideJob, Any]] = deque()  # (job, held lock) queued for reading
    queue_iter = iter(todo)

    def claim_more() -> None:
        while len(pending) < _LOOKAHEAD_SLIDES:
            job = next(queue_iter, None)
            if job is None:
                return
            lock = try_lock(slide_lock_path(cache_dir, job.slide_id))
            if lock is None:
                result.n_busy += 1
                log.info("%s is being extracted by another process; leaving it to that process", job.slide_id)
                emit(progress, "advance", "slides", steps=1)
                continue
            if _is_done(cache_dir, job, config, key):
                lock.release()  # finished by another process since the first check
                result.n_skipped += 1
                emit(progress, "advance", "slides", steps=1)
                continue
            pending.append((job, lock))
            stream.submit(job)

    try:
        claim_more()
        while pending:
            job, lock = pending[0]
            try:
                row = _extract_one(job, stream, encoder, cache_dir, config, common, result)
                update_manifest(cache_dir, [row])  # while the slide is still ours: no stale row can win
            finally:
                lock.release()
                pending.popleft()
            result.rows.append(row)
            setattr(result, f"n_{row.status}", getattr(result, f"n_{row.status}") + 1)
            rate = result.n_patches / result.compute_seconds if result.compute_seconds else 0.0
            emit(
                progress, "advance", "slides", steps=1,
                info={"patches/s": rate, "read s": result.read_seconds, "encode s": result.compute_seconds},
            )
            if row.status == "failed" and not config.skip_errors:
                raise SlideError(f"slide {job.slide_id} failed: {row.reason} (the run stops because of --no-skip-errors)")
            claim_more()
    finally:
        for _, lock in pending:
            lock.release()
        stream.close()
    result.rows.extend(
        ManifestRow(slide_id=j.slide_id, patient_id=j.patient_id, source=str(j.path), status="ok",
                    reason="already complete", n_patches=_n_patches(cache_dir, j, config.format))
        for j in complete
    )
    result.seconds = time.perf_counter() - t_start
    emit(progress, "end", "slides")
    log.info(
        "done: %d ok, %d skipped, %d empty, %d failed, %d busy; %d patches in %.1f s",
        result.n_ok, result.n_skipped, result.n_empty, result.n_failed, result.n_busy, result.n_patches, result.seconds,
    )
    return result


def _is_done(cache_dir: Path, job: SlideJob, config: ExtractConfig, key: str) -> bool:
    """Complete with this key and computed from the same input; a changed input is redone with a warning."""
    from balnmp_cache.cache.slide import read_header

    if config.force:
        return False
    path = slide_path(cache_dir, job.slide_id, config.format)
    if not is_complete(path, cache_key=key):
        return False
    attrs = read_header(path).attrs
    if attrs.get("source_fingerprint") == source_fingerprint(job):
        return True
    log.warning(
        "%s: the cached features came from another input (%s); extracting again from %s",
        job.slide_id, attrs.get("source_path", "unknown"), job.path,
    )
    return False


def _n_patches(cache_dir: Path, job: SlideJob, format: str) -> int:
    from balnmp_cache.cache.slide import read_header

    with contextlib.suppress(Exception):
        return int(read_header(slide_path(cache_dir, job.slide_id, format)).n_patches)
    return 0


def _extract_one(
    job: SlideJob,
    stream: PatchStream,
    encoder: BatchEncoder,
    cache_dir: Path,
    config: ExtractConfig,
    common: dict[str, Any],
    result: ExtractResult,
) -> ManifestRow:
    """Consume ``job``'s items from the stream, encode them, write the slide; return its manifest row."""
    buffer = _SlideBuffer(job)
    base = dict(slide_id=job.slide_id, patient_id=job.patient_id, source=str(job.path))
    stored = np.float16 if config.dtype == "float16" else np.float32
    encode_error: str | None = None
    while True:
        item = stream.get()
        if item.job.slide_id != job.slide_id:  # the stream serves slides in the order submitted
            raise RuntimeError(f"reader thread out of order: expected {job.slide_id}, got {item.job.slide_id}")
        if isinstance(item, SlideFailed):
            log.error("%s failed: %s", job.slide_id, item.reason)
            return ManifestRow(**base, status="failed", reason=item.reason, seconds=time.perf_counter() - buffer.started)
        if isinstance(item, SlideDone):
            result.read_seconds += item.info.setup_seconds
            break
        result.read_seconds += item.read_seconds
        if len(item.patches) and encode_error is None:
            t0 = time.perf_counter()
            try:
                # cast on arrival: a slide's buffer holds stored-dtype bytes, not float32 ones
                buffer.add(item, encoder(item.patches).astype(stored, copy=False))
            except (RuntimeError, ValueError, MemoryError) as err:  # keep draining this slide's items
                encode_error = f"encoding failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                log.debug("encoding %s failed", job.slide_id, exc_info=True)
            result.compute_seconds += time.perf_counter() - t0
    seconds = time.perf_counter() - buffer.started
    if encode_error is not None:
        log.error("%s failed: %s", job.slide_id, encode_error)
        return ManifestRow(**base, status="failed", reason=encode_error, seconds=seconds)
    if buffer.n_patches == 0:
        rule = (
            f"white ratio < {config.white_ratio_max:g}" if config.patch_filter == "white_ratio" else f"background < {config.background_max:g}"
        )
        reason = f"no patch kept: 0 of {item.info.n_candidates} candidate patches passed the filter ({rule})"
        if item.info.n_candidates == 0:
            reason = "no candidate patch: the annotated regions / detected tissue cover no grid cell"
        if item.info.notes:
            reason += f"; {item.info.notes[0]}"
        log.warning("%s: %s", job.slide_id, reason)
        return ManifestRow(**base, status="empty", reason=reason, seconds=seconds)
    attrs = {
        **common, **item.info.attrs, "patient_id": job.patient_id, "source_path": str(job.path),
        "source_fingerprint": source_fingerprint(job),
    }
    if item.info.notes:
        attrs["notes"] = "; ".join(item.info.notes)
    sf = SlideFeatures(
        slide_id=job.slide_id,
        features=np.concatenate(buffer.features),
        coords=np.concatenate(buffer.coords).astype(np.int64),
        region_id=np.concatenate(buffer.region_id).astype(np.int32),
        patch_key=np.array(buffer.patch_key, dtype=object),
        attrs=attrs,
    )
    try:
        write_slide(cache_dir, sf, format=config.format, dtype=config.dtype)
    except (BalnmpError, OSError) as err:  # e.g. NaN/inf features, a full disk: this slide fails alone
        reason = f"writing failed: {str(err).splitlines()[0]}"
        log.error("%s failed: %s", job.slide_id, reason)
        return ManifestRow(**base, status="failed", reason=reason, seconds=time.perf_counter() - buffer.started)
    result.n_patches += sf.n_patches
    seconds = time.perf_counter() - buffer.started
    log.info("%s: %d patches in %.1f s", job.slide_id, sf.n_patches, seconds)
    reason = "; ".join(item.info.notes)
    return ManifestRow(**base, status="ok", reason=reason, n_patches=sf.n_patches, seconds=seconds)
