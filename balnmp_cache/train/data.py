"""A task's training data: cached features matched to the cohort's patients, labels and splits.

Slides map to patients through the cache's patient ids; a patient's patches from several slides
are pooled. Everything a user can get wrong — a task patient without features, a cached slide
whose patient is not in the cohort, official labels that disagree with the cohort — is collected
into one :class:`~balnmp_cache.errors.CohortError` before any training starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.cohort import (
    ClinicalEncoder,
    Cohort,
    OfficialBags,
    TaskSpec,
    fit_clinical,
    get_task,
    load_official_bags,
    resolve_splits,
)
from balnmp_cache.cohort.table import format_rows
from balnmp_cache.errors import CohortError
from balnmp_cache.sorting import natural_key
from balnmp_cache.train.bags import PatientRows

if TYPE_CHECKING:
    from balnmp_cache.cache import FeatureCache
    from balnmp_cache.train.config import TrainConfig

__all__ = ["TaskData", "cache_provenance", "patient_rows", "prepare_task_data"]

log = logging.getLogger(__name__)


@dataclass
class TaskData:
    """Cached features of a task's patients, with their labels and splits.

    Attributes:
        cache: the loaded feature cache (features stay in the stored dtype).
        task: the task.
        patient_ids: the task's patients, natural order; index = patient index.
        labels: (P,) int64 class labels.
        split: (P,) object array of ``train``/``val``/``test``.
        rows: each patient's feature rows (all of its slides).
        table: the cohort table (for clinical encoding).
        official: the official bags when the run uses the official JSON files.
    """

    cache: FeatureCache
    task: TaskSpec
    patient_ids: list[str]
    labels: np.ndarray
    split: np.ndarray
    rows: PatientRows
    table: Any
    official: OfficialBags | None = None

    @property
    def n_patients(self) -> int:
        return len(self.patient_ids)

    def in_split(self, name: str) -> np.ndarray:
        """(S,) patient indices of one split."""
        return np.flatnonzero(self.split == name)

    def clinical(self, extra_columns: list[str] | tuple[str, ...] = ()) -> tuple[ClinicalEncoder, np.ndarray]:
        """Fit the official clinical encoding on the training split -> (encoder, (P, K) float32)."""
        train_ids = [self.patient_ids[i] for i in self.in_split("train")]
        encoder = fit_clinical(self.table, train_ids, extra_columns=list(extra_columns), patient_ids=self.patient_ids)
        return encoder, encoder.transform(self.table, self.patient_ids)


def cache_provenance(cache: FeatureCache) -> dict[str, Any]:
    """The cache facts a run records: encoder, weights, random_weights, cache_key, directory, ..."""
    attrs = cache.attrs
    return {
        "encoder": str(attrs.get("encoder", attrs.get("source_format", "unknown"))),
        "weights": str(attrs.get("weights", "unknown")),
        "random_weights": bool(attrs.get("random_weights", False)),
        "cache_key": str(attrs.get("cache_key", "")),
        "directory": str(cache.directory),
        "mode": str(attrs.get("mode", "")),
        "feature_dim": int(cache.feature_dim),
        "dtype": str(cache.features.dtype),
    }


def patient_rows(cache: FeatureCache, patient_ids: list[str]) -> PatientRows:
    """Feature rows of each patient in ``patient_ids`` (slides of one patient pooled, in slide order)."""
    by_patient: dict[str, list[np.ndarray]] = {}
    for i, pid in enumerate(cache.patient_ids):
        by_patient.setdefault(pid, []).append(np.arange(cache.offsets[i], cache.offsets[i + 1], dtype=np.int64))
    return PatientRows.from_lists([np.concatenate(by_patient[pid]) for pid in patient_ids])


def _manifest_reasons(cache: FeatureCache) -> dict[str, str]:
    """patient id -> why its slides have no features, from the cache's manifest."""
    from balnmp_cache.cache import read_manifest

    reasons: dict[str, str] = {}
    try:
        rows = read_manifest(cache.directory)
    except Exception as err:  # the manifest only explains; never let it hide the real error
        log.debug("cannot read the manifest of %s: %s", cache.directory, err)
        return reasons
    for row in rows:
        if row.status != "ok":
            pid = row.patient_id or row.slide_id
            why = f"slide {row.slide_id} {row.status}" + (f": {row.reason}" if row.reason else "")
            reasons[pid] = f"{reasons[pid]}; {why}" if pid in reasons else why
    return reasons


def _match(cache: FeatureCache, cohort: Cohort, labels: Any, cache_flag: str) -> list[str]:
    """Problems matching cached slides to cohort patients (empty when all is well)."""
    table = cohort.table
    problems: list[str] = []
    known = set(table.index)
    orphans = [(sid, pid) for sid, pid in zip(cache.slide_ids, cache.patient_ids, strict=True) if pid not in known]
    for sid, pid in orphans:
        problems.append(f"cached slide {sid} (patient {pid!r}): the patient is not in the cohort {cohort.source}")
    have = set(cache.patient_ids)
    absent = [pid for pid in labels.index if pid not in have]
    if absent:
        reasons = _manifest_reasons(cache)
        for pid in sorted(absent, key=natural_key):
            row = table.at[pid, "source_row"] if "source_row" in table else "?"
            why = reasons.get(pid, "no slide of this patient in the cache")
            problems.append(f"row {row} (patient {pid}): no cached features ({why})")
    if problems:
        hints = []
        if orphans:
            hints.append("add the patients to the cohort table or extract a cache of the cohort's slides only")
        if absent:
            hints.append(f"extract the missing slides into {cache.directory} ({cache_flag}) "
                         "or remove the patients from the cohort")
        problems.append("to fix: " + "; ".join(hints))
    return problems


def prepare_task_data(cfg: TrainConfig, cache: FeatureCache, cohort: Cohort) -> TaskData:
    """Match ``cache`` to ``cohort`` for ``cfg.task`` and resolve the splits.

    Raises:
        CohortError: patients without features, cached slides without a cohort patient, splits that
            do not cover the task, or official labels that disagree with the cohort (all listed).
        CacheError: official bags name patch keys the cache lacks.
    """
    task = get_task(cfg.task)
    labels = cohort.labels(task)
    problems = _match(cache, cohort, labels, "--cache / key 'cache'")
    official = None
    if cfg.split == "official" or cfg.bags == "official":
        official = load_official_bags(Path(cfg.official_json), cfg.task)  # type: ignore[arg-type]
        for pid in sorted(set(official.labels) & set(labels.index), key=natural_key):
            if official.labels[pid] != int(labels[pid]):
                problems.insert(
                    0,
                    f"patient {pid}: label {labels[pid]} in the cohort but {official.labels[pid]} in the official "
                    f"*-type-{cfg.task}.json",
                )
    if problems:
        raise CohortError(
            f"the cohort {cohort.source} and the cache {cache.directory} do not match for task {task.task} "
            f"({task.name}):\n{format_rows(problems, limit=30)}"
        )
    splits_file: Path | None
    if cfg.splits_file is None and cfg.split == "kfold":
        # not keyed by the training seed: every seed of an ablation must see the same patients
        splits_file = Path(cfg.out).parent / f"splits-task{cfg.task}-k{cfg.folds}-splitseed{cfg.split_seed}.csv"
    else:
        splits_file = cfg.splits_file
    assignment = resolve_splits(
        cohort.table, labels, scheme=cfg.split, official=official, k=cfg.folds, fold=cfg.fold, seed=cfg.split_seed,
        splits_file=splits_file,
    )
    patient_ids = sorted(assignment, key=natural_key)
    counts = {s: sum(1 for p in patient_ids if assignment[p] == s) for s in ("train", "val", "test")}
    log.info("task %d (%s): %d patients (train %d, val %d, test %d)", task.task, task.name, len(patient_ids),
             counts["train"], counts["val"], counts["test"])
    return TaskData(
        cache=cache,
        task=task,
        patient_ids=patient_ids,
        labels=np.array([int(labels[p]) for p in patient_ids], dtype=np.int64),
        split=np.array([assignment[p] for p in patient_ids], dtype=object),
        rows=patient_rows(cache, patient_ids),
        table=cohort.table,
        official=official,
    )
