"""Before any slide is claimed: the slides of this run (and shard), the encoder's identity, the cache, the plan.

:func:`open_session` is where a re-run over a finished cache spends all its time, so it does only
what it must: the encoder's identity comes from an earlier run's record when that is still valid
(:mod:`~balnmp_cache.extract.identity`, no torch import), the cache directory is opened, what an
interrupted run left is recovered, and every slide is judged by the completion index. The encoder is
built only when slides remain to do — and then its real identity is compared with the record: a
stale record (it names another key) is replaced and the cache and plan are made again for the real key.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from balnmp_cache.cache import CacheDir, ManifestRow, cache_dir_name, cache_key
from balnmp_cache.config import save_resolved
from balnmp_cache.errors import CacheError, ConfigError, StorageError
from balnmp_cache.extract.claims import cached
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.extract.encode import BatchEncoder, resolve_decode
from balnmp_cache.extract.filters import PatchFilter
from balnmp_cache.extract.fingerprint import input_bytes
from balnmp_cache.extract.identity import EncoderIdentity, known_identity, remember_identity
from balnmp_cache.extract.provenance import Provenance, extract_provenance
from balnmp_cache.fsio import describe_os_error
from balnmp_cache.shards import parse_shard, select_shard
from balnmp_cache.slides import SlideJob, resolve_sources

__all__ = ["Plan", "Session", "failed_row", "open_session", "resolve_jobs"]

log = logging.getLogger(__name__)


@dataclass
class Plan:
    """The slides of a run sorted before any is claimed."""

    todo: list[SlideJob] = field(default_factory=list)
    complete: list[SlideJob] = field(default_factory=list)
    invalid: list[ManifestRow] = field(default_factory=list)  # ids that cannot name a file (not in the manifest)
    conflicts: list[ManifestRow] = field(default_factory=list)  # ids another source's complete file holds


@dataclass
class Session:
    """An opened run: the encoder's identity, where JPEGs decode, the provenance, the cache and the plan."""

    identity: EncoderIdentity
    decode: str
    provenance: Provenance
    cache: CacheDir
    plan: Plan


def _with_prefix(job: SlideJob, prefix: str) -> SlideJob:
    """``job`` under the slide id ``prefix + slide_id``; a patient id taken from the file name follows it.

    A manifest CSV's explicit patient id is kept; a patient id that is the slide id (folders, BCNB
    roots) gets the prefix too, so that ``1.jpg`` of two collections stays two patients.
    """
    patient_id = prefix + job.patient_id if job.patient_id == job.slide_id else job.patient_id
    return dataclasses.replace(job, slide_id=prefix + job.slide_id, patient_id=patient_id)


def resolve_jobs(config: ExtractConfig) -> list[SlideJob]:
    """The slides of ``config.sources`` (prefixed), and of its shard only with ``--shard I/N``.

    Shards are cut from the whole list sorted by slide id, balanced by the bytes of each slide's
    input files, so every process of an array computes the same split (:mod:`balnmp_cache.shards`).

    Raises:
        ConfigError: no source given, or none holds a slide.
    """
    if not config.sources:
        raise ConfigError("no SOURCE given: pass slides, folders, a BCNB root or a manifest CSV (or key 'sources')")
    jobs = resolve_sources(config.sources, prefer=config.prefer)
    if not jobs:
        raise ConfigError(f"no slides found in {', '.join(map(str, config.sources))}")
    if config.slide_id_prefix:
        jobs = [_with_prefix(job, config.slide_id_prefix) for job in jobs]
    if config.shard is not None:
        index, count = parse_shard(config.shard)
        ordered = sorted(jobs, key=lambda job: (job.slide_id, str(job.path)))
        jobs = select_shard(ordered, index, count, weight=input_bytes)
        log.info("shard %d/%d: %d of %d slide(s)", index, count, len(jobs), len(ordered))
    return jobs


def failed_row(job: SlideJob, reason: str) -> ManifestRow:
    return ManifestRow(slide_id=job.slide_id, patient_id=job.patient_id, source=str(job.path), status="failed",
                       reason=reason)


def plan_jobs(jobs: Iterable[SlideJob], cache: CacheDir, *, force: bool) -> Plan:
    """Sort ``jobs`` into to-do, complete, refused ids and conflicts (see :meth:`CacheDir.cached_slide`)."""
    plan = Plan()
    for job in jobs:
        try:
            cache.check_slide_id(job.slide_id)
        except CacheError as err:
            plan.invalid.append(failed_row(dataclasses.replace(job, slide_id=job.slide_id or "(empty)"), str(err)))
            log.error("%s", err)
            continue
        verdict = cached(cache, job, force=force)
        if verdict.status == "done":
            plan.complete.append(job)
        elif verdict.status == "conflict":
            plan.conflicts.append(failed_row(job, verdict.reason))
            log.error("%s failed: %s", job.slide_id, verdict.reason)
        else:
            if verdict.reason:
                log.warning("%s: %s; extracting it again", job.slide_id, verdict.reason)
            plan.todo.append(job)
    return plan


def _provenance(config: ExtractConfig, identity: EncoderIdentity, patch_filter: PatchFilter) -> tuple[str, Provenance]:
    decode = resolve_decode(config, identity.device)
    return decode, extract_provenance(config, identity, patch_filter, decode=decode)


def _open(config: ExtractConfig, identity: EncoderIdentity, patch_filter: PatchFilter, jobs: list[SlideJob]) -> Session:
    """Create or open the cache of ``identity``, recover it and plan ``jobs`` against it.

    Raises:
        StorageError: the cache cannot be written there (full, read-only, no permission).
    """
    decode, provenance = _provenance(config, identity, patch_filter)
    cache = CacheDir.create(config.out, provenance.key_params(), encoder=identity.name, mode=identity.mode,
                            format=config.format, dtype=config.dtype)
    try:
        save_resolved(config.model_copy(update={"shard": None}), cache.directory)  # the config of the whole cohort
        cache.recover()
    except OSError as err:
        raise StorageError(f"{describe_os_error(err, cache.directory)} (opening the cache)") from err
    plan = plan_jobs(jobs, cache, force=config.force)
    cache.record_verified()
    return Session(identity, decode, provenance, cache, plan)


def _build(config: ExtractConfig) -> BatchEncoder:
    runner = BatchEncoder.build(config)
    remember_identity(config, runner.identity)
    return runner


def _exists(config: ExtractConfig, identity: EncoderIdentity, patch_filter: PatchFilter) -> bool:
    key = cache_key(_provenance(config, identity, patch_filter)[1].key_params())
    return (config.out / cache_dir_name(identity.name, identity.mode, key)).is_dir()


def open_session(
    config: ExtractConfig, jobs: list[SlideJob], patch_filter: PatchFilter, *, encoder: BatchEncoder | None = None
) -> tuple[Session, BatchEncoder | None, float]:
    """The opened run, the built encoder (``None`` when nothing is left to do and it was not needed) and
    the seconds spent learning the encoder's identity (see the module docstring). An ``encoder`` built
    earlier for ``config`` (a long-lived worker's) is used as it is, and its identity with it."""
    if encoder is not None:
        return _open(config, encoder.identity, patch_filter, jobs), encoder, 0.0
    t0 = time.perf_counter()
    identity = known_identity(config)
    runner = None
    if identity is None or not _exists(config, identity, patch_filter):
        runner = _build(config)
        identity = runner.identity
    setup_seconds = time.perf_counter() - t0
    session = _open(config, identity, patch_filter, jobs)
    if session.plan.todo and runner is None:
        t0 = time.perf_counter()
        runner = _build(config)
        setup_seconds += time.perf_counter() - t0
        if runner.identity != identity:
            log.warning("the recorded identity of encoder %s was out of date (%s, now %s); using the built one",
                        identity.name, identity.identifier, runner.identity.identifier)
            session = _open(config, runner.identity, patch_filter, jobs)
    return session, runner, setup_seconds
