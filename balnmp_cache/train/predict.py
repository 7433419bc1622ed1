"""``run_predict``: apply a trained run to new slides or patients.

Sources are either feature caches (used as they are, after checking that they were extracted the
way the run's training cache was) or slides, folders and BCNB roots, which are first extracted
with the run's encoder settings (the training cache's ``config.toml``) into ``<out>/cache``.
Every patient is scored on its evaluation bags (``max(1, floor(n / N))`` bags of the run's N,
drawn from the patient's own patches with a generator of the patient id) and the bag probabilities
are merged as in training, so a patient gets the probabilities it got in training (for runs trained
with `bags = "random"`; runs on the official fixed bags were evaluated on those, which new slides lack).

Failures are per slide and per patient: a slide that cannot be extracted (unreadable, no tissue, a
slide id another file already holds in ``<out>/cache``), a patient without a cohort row or with blank
clinical values. Each is a row of ``failures.csv`` with its reason, the others are scored, and the
result's exit code is 1. Only the slides of this call are scored, never other files of the same cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.config import save_resolved
from balnmp_cache.errors import CacheError, CohortError, ConfigError
from balnmp_cache.outdir import naming_errors, recover
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.runs import (
    Checkpoint,
    Scores,
    has_checkpoint,
    read_checkpoint,
    run_files,
    unfinished_reason,
    write_csv,
    write_scores,
)
from balnmp_cache.sorting import natural_key
from balnmp_cache.train.bags import BagSet, eval_bags
from balnmp_cache.train.config import PredictConfig
from balnmp_cache.train.data import patient_rows
from balnmp_cache.train.metrics import merge_bags

__all__ = [
    "FAILURE_COLUMNS", "PredictFailure", "PredictResult", "PredictRow", "clinical_vectors", "load_run", "run_predict",
]

log = logging.getLogger(__name__)


@dataclass
class PredictRow:
    """One patient's prediction: class probabilities and the patches with the highest attention."""

    patient_id: str
    probabilities: list[float]
    top_patches: list[tuple[str, float]]


FAILURE_COLUMNS = ("patient_id", "slide_id", "source", "reason")
"""Columns of ``failures.csv``: one row per slide or patient that could not be scored."""


@dataclass(frozen=True)
class PredictFailure:
    """A slide or a patient that was not scored, and why (``slide_id`` is '' for a patient's failure)."""

    patient_id: str
    slide_id: str
    source: str
    reason: str


@dataclass
class PredictResult:
    """What ``run_predict`` reports: the output folder, class names, one row per patient, the failures."""

    out: Path
    classes: list[str]
    rows: list[PredictRow]
    failures: list[PredictFailure] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when any slide or patient failed, else 0."""
        return 1 if self.failures else 0


@dataclass
class _Selection:
    """The cache to score and which of its slides belong to this call (``None``: all of them)."""

    cache_dir: Path | None
    slide_ids: list[str] | None
    failures: list[PredictFailure]


def load_run(run_dir: Path) -> tuple[Checkpoint, Any]:
    """The checkpoint of a finished run directory and its head (eval mode, on the CPU).

    Raises:
        ConfigError: the run is not finished (no complete ``run.json``), has no checkpoint, or one this
            version cannot read.
    """
    from balnmp_cache.mil import create_head

    recover(run_dir)  # a swap a killed train left half done
    reason = unfinished_reason(run_dir)
    if reason is not None:
        stale = f"; its {run_files(run_dir).checkpoint.name} may be stale or partial" if has_checkpoint(run_dir) else ""
        raise ConfigError(f"{run_dir} is not a finished train run ({reason}{stale}); pass the --out of a train run "
                          "that finished, or train it again")
    ckpt = read_checkpoint(run_dir)
    head = create_head(ckpt.head, in_dim=ckpt.in_dim, n_classes=ckpt.n_classes, clinical_dim=ckpt.clinical_dim,
                       **ckpt.head_options)
    head.load_state_dict(ckpt.state_dict)
    return ckpt, head.eval()


def _as_cache(path: Path) -> Path | None:
    """The cache directory ``path`` names, or ``None`` when it is not a feature cache."""
    from balnmp_cache.cache import list_slide_files, resolve_cache_dir

    if not Path(path).is_dir():
        return None
    try:
        directory = resolve_cache_dir(path)
    except CacheError:
        return None
    return directory if list_slide_files(directory) else None


def _extract(ckpt: Checkpoint, sources: list[Path], out: Path, progress: ProgressCallback | None) -> _Selection:
    """Extract ``sources`` with the run's encoder settings into ``<out>/cache``; this call's slides and failures."""
    from balnmp_cache.config import load_config
    from balnmp_cache.extract import ExtractConfig, run_extract

    train_cache = Path(ckpt.cache["directory"])
    settings = train_cache / "config.toml"
    if not settings.is_file():
        raise CacheError(
            f"the run's training cache {train_cache} has no config.toml, so its encoder settings are unknown; "
            "extract the slides yourself with the same settings and pass that cache as SOURCE"
        )
    overrides = {"sources": [str(s) for s in sources], "out": str(out / "cache")}
    cfg = load_config(ExtractConfig, settings, overrides=overrides)
    log.info("extracting %d source(s) with the run's encoder settings (%s) into %s", len(sources), cfg.encoder, cfg.out)
    result = run_extract(cfg, progress=progress)
    failed = [r for r in result.rows if r.status != "ok"]
    refused = {r.slide_id for r in failed}  # e.g. an id another file already holds: never scored from that file
    failures = [PredictFailure(r.patient_id, r.slide_id, r.source, f"{r.status}: {r.reason}") for r in failed]
    if result.n_busy:
        failures.append(PredictFailure("", "", str(result.cache_dir), f"{result.n_busy} slide(s) were being extracted "
                                       "by another process at the same time; re-run predict when it has finished"))
    slide_ids = sorted({r.slide_id for r in result.rows if r.status == "ok"} - refused)
    log.info("extraction: %d slide(s) to score, %d failed (exit code %d)", len(slide_ids), len(failed),
             result.exit_code)
    return _Selection(result.cache_dir, slide_ids, failures)


def _cache_failures(cache_dir: Path, loaded: set[str]) -> list[PredictFailure]:
    """Slides a given cache's manifest records as failed or empty (they have no file to score)."""
    from balnmp_cache.cache import read_manifest

    try:
        rows = read_manifest(cache_dir)
    except (CacheError, OSError) as err:  # the manifest only explains; the cache itself was loaded
        log.debug("cannot read the manifest of %s: %s", cache_dir, err)
        return []
    return [PredictFailure(r.patient_id, r.slide_id, r.source, f"{r.status} in {cache_dir}: {r.reason}")
            for r in rows if r.status != "ok" and r.slide_id not in loaded]


def _check_compatible(ckpt: Checkpoint, cache: Any) -> None:
    trained = ckpt.cache
    if cache.feature_dim != ckpt.in_dim:
        raise CacheError(
            f"features in {cache.directory} are {cache.feature_dim}-d but the run was trained on {ckpt.in_dim}-d "
            f"features of encoder {trained.get('encoder')}; pass slides (to extract them with the run's settings) or "
            "a cache of the same encoder"
        )
    key = str(cache.attrs.get("cache_key", ""))
    if key and trained.get("cache_key") and key != trained["cache_key"]:
        raise CacheError(
            f"{cache.directory} was extracted with other settings (cache key {key}) than the run's training cache "
            f"(cache key {trained['cache_key']}, encoder {trained.get('encoder')}); pass slides to extract them with "
            "the run's settings"
        )


def _clinical(
    ckpt: Checkpoint, cohort: Path | None, patient_ids: list[str]
) -> tuple[np.ndarray | None, list[PredictFailure]]:
    """(P', K) clinical vectors of the patients that have them, and a failure for each that has not.

    ``None`` when the run does not use clinical data. The returned rows follow ``patient_ids`` without
    the failed patients.

    Raises:
        ConfigError: the run needs clinical data and no cohort was given, or its checkpoint lacks the encoding.
    """
    from balnmp_cache.cohort import ClinicalEncoder, load_cohort

    if not ckpt.clinical_dim:
        return None, []
    if cohort is None:
        raise ConfigError("this run was trained with clinical data; pass --cohort with the patients' clinical table")
    if ckpt.clinical_encoder is None:
        raise ConfigError(
            "this run's checkpoint fuses clinical data but lacks its clinical encoding; re-run the training"
        )
    table = load_cohort(cohort, require_outcome=False).table
    encoder = ClinicalEncoder.from_json(ckpt.clinical_encoder)
    failures = []
    for pid in patient_ids:
        if pid not in table.index:
            reason = f"no row in the cohort {cohort}; add the patient to the cohort table (--cohort)"
        else:
            blank = [c for c in encoder.columns if _is_blank(table.at[pid, c])]
            if not blank:
                continue
            reason = f"row {table.at[pid, 'source_row']} of {cohort}: {', '.join(blank)} blank; fill it in"
        failures.append(PredictFailure(pid, "", str(cohort), reason))
    failed = {f.patient_id for f in failures}
    kept = [pid for pid in patient_ids if pid not in failed]
    return encoder.transform(table, kept), failures


def clinical_vectors(ckpt: Checkpoint, cohort: Path | None, patient_ids: list[str]) -> np.ndarray | None:
    """(P, K) clinical vectors of ``patient_ids`` encoded as the run encoded them; ``None`` for image-only runs.

    Unlike ``predict``, which scores the other patients and lists these as failures, every patient must have them.

    Raises:
        ConfigError, CohortError: the run fused clinical data and ``cohort`` is missing, lacks a patient or a value.
    """
    from balnmp_cache.cohort.table import format_rows

    vectors, failures = _clinical(ckpt, cohort, patient_ids)
    if failures:
        listed = [f"patient {f.patient_id}: {f.reason}" for f in failures]
        raise CohortError(f"clinical data missing for {len(failures)} patient(s):\n{format_rows(listed)}")
    return vectors


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def run_predict(config: PredictConfig, *, progress: ProgressCallback | None = None) -> PredictResult:
    """Score the patients of ``config.sources`` with the run in ``config.run_dir``.

    ``config.sources`` are feature caches, or slides / folders / BCNB roots to extract first;
    ``config.cohort`` holds the patients' clinical data (needed when the run fused clinical data);
    ``config.top_k`` patches with the highest attention are reported per patient. The output folder
    (``config.out_dir``) gets ``predictions.csv`` (patient_id, n_bags, p_0 … p_{C-1}), ``attention.csv``
    (patient_id, bag, patch_key, x, y, attention), ``failures.csv`` (:data:`FAILURE_COLUMNS`: every
    slide or patient not scored, with its reason; only the header when none), the resolved
    ``config.toml`` and ``cache/`` when slides were extracted. ``progress`` receives ``predict`` events
    (and the extraction's).

    Raises:
        ConfigError, CacheError, CohortError: an unusable run, sources or cohort.
    """
    from balnmp_cache.cache import load_cache

    run_dir, out = config.run_dir, config.out_dir
    ckpt, head = load_run(run_dir)
    selection = _select(ckpt, [Path(s) for s in config.sources], out, progress)
    failures = list(selection.failures)
    scores, rows = _no_scores(ckpt), list[PredictRow]()
    if selection.cache_dir is not None and selection.slide_ids != []:
        cache = load_cache(selection.cache_dir, slide_ids=selection.slide_ids)
        _check_compatible(ckpt, cache)
        if selection.slide_ids is None:
            failures += _cache_failures(selection.cache_dir, set(cache.slide_ids))
        patient_ids = sorted(set(cache.patient_ids), key=natural_key)
        clinical, failed = _clinical(ckpt, config.cohort, patient_ids)
        failures += failed
        patient_ids = [pid for pid in patient_ids if pid not in {f.patient_id for f in failed}]
        if patient_ids:
            scores, rows = _score(ckpt, head, cache, patient_ids, clinical, top_k=config.top_k, progress=progress)
    with naming_errors(out):  # a full disk: the one-line error names the output folder
        out.mkdir(parents=True, exist_ok=True)
        save_resolved(config, out)
        write_scores(out, scores)
        write_csv(out / "failures.csv", FAILURE_COLUMNS,
                  ([f.patient_id, f.slide_id, f.source, f.reason] for f in failures))
    log.info("predicted %d patient(s) with %s, %d failure(s); written to %s", len(rows), run_dir, len(failures), out)
    return PredictResult(out=out, classes=list(ckpt.classes), rows=rows, failures=failures)


def _score(
    ckpt: Checkpoint, head: Any, cache: Any, patient_ids: list[str], clinical: np.ndarray | None, *, top_k: int,
    progress: ProgressCallback | None,
) -> tuple[Scores, list[PredictRow]]:
    """Every patient of ``patient_ids`` scored on its evaluation bags: the scores to write and the rows to show."""
    import torch

    from balnmp_cache.train.engine import FeatureSource, evaluate, resolve_device

    if ckpt.bags == "official":
        log.warning(
            "this run was trained and evaluated on the official fixed bags; predictions use the standard "
            "evaluation bags (all floor(n/N) disjoint bags per patient), so they can differ from the run's own"
        )
    bags = eval_bags(patient_rows(cache, patient_ids), patient_ids, bag_size=int(ckpt.bag_size))
    emit(progress, "start", "predict", total=len(patient_ids))
    device = resolve_device("auto")
    source = FeatureSource(cache.features, device, precision=ckpt.precision)
    clin = None if clinical is None else torch.from_numpy(clinical).to(device)
    bag_probs, attention = evaluate(head.to(device), clin, bags, source, attention=True)
    probs, n_bags = merge_bags(bag_probs, bags.patient, len(patient_ids), how=ckpt.merge)
    emit(progress, "advance", "predict", steps=len(patient_ids))
    emit(progress, "end", "predict")
    scores = Scores(patient_ids=patient_ids, probs=probs, n_bags=n_bags, bags=bags, attention=attention,
                    patch_key=cache.patch_key, coords=cache.coords)
    probs = probs / probs.sum(axis=1, keepdims=True)
    return scores, _rows(patient_ids, probs, bags, attention, cache.patch_key, top_k)


def _no_scores(ckpt: Checkpoint) -> Scores:
    """Scores of no patient: the score files then hold their header only."""
    empty = np.zeros(0, dtype=np.int64)
    bags = BagSet(rows=np.zeros((0, 1), dtype=np.int64), patient=empty, bag=empty)
    return Scores(patient_ids=[], probs=np.zeros((0, ckpt.n_classes)), n_bags=empty, bags=bags,
                  attention=np.zeros((0, 1)), patch_key=np.array([], dtype=object), coords=np.zeros((0, 2)))


def _select(ckpt: Checkpoint, sources: list[Path], out: Path, progress: ProgressCallback | None) -> _Selection:
    """The one feature cache among ``sources`` (all of it), or the slides among them, extracted into one."""
    if not sources:
        raise ConfigError("no SOURCE given; pass slides, folders, BCNB roots or a feature cache")
    caches = [_as_cache(s) for s in sources]
    if all(c is not None for c in caches):
        if len(set(caches)) > 1:
            raise ConfigError("pass one feature cache at a time as SOURCE (or slides to extract together)")
        return _Selection(caches[0], None, [])
    if any(c is not None for c in caches):
        raise ConfigError("SOURCE mixes feature caches and slides; pass either one cache or slides")
    return _extract(ckpt, sources, out, progress)


def _rows(patient_ids: list[str], probs: np.ndarray, bags: BagSet, attention: np.ndarray, patch_key: np.ndarray,
          top_k: int) -> list[PredictRow]:
    """One row per patient: (P, C) ``probs`` and the ``top_k`` patches of its bags with the highest attention."""
    rows = []
    real = bags.rows >= 0
    for p, pid in enumerate(patient_ids):
        mine = (bags.patient == p)[:, None] & real  # (B, N)
        keys = patch_key[bags.rows[mine]]
        weights = attention[mine]
        top = np.argsort(-weights, kind="stable")[:top_k]
        rows.append(PredictRow(pid, [float(v) for v in probs[p]], [(str(keys[i]), float(weights[i])) for i in top]))
    return rows
