"""Subgroup analysis of the test split: metrics per subgroup and a test of the AUC difference.

Subgroups follow the paper: age ``<= cutoff`` vs ``> cutoff`` (50 years), T stage (T1: tumour size
``<= 2 cm``, T2: ``> 2 cm``), ER, PR and HER2 positive vs negative. The two AUCs of a variable come
from disjoint patients, so their difference is tested with ``z = (A1 - A2) / sqrt(SE1² + SE2²)``
using DeLong standard errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.report.binary import METRIC_KEYS, Threshold, binary_metrics
from balnmp_cache.report.delong import AucTest, delong_se, unpaired_auc_test
from balnmp_cache.report.predictions import RunPredictions
from balnmp_cache.sorting import natural_key

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SUBGROUP_KEYS", "SUBGROUP_TITLES", "receptor_status", "split_at", "subgroup_levels", "subgroup_records"]

log = logging.getLogger(__name__)

SUBGROUP_TITLES = {"age": "Age", "t_stage": "T stage", "er": "ER", "pr": "PR", "her2": "HER2"}
_RUN_KEYS = ("run", "split", "threshold_rule", "threshold", "threshold_note", "notes")
_METRIC_PART = tuple(k for k in METRIC_KEYS if k not in _RUN_KEYS)
SUBGROUP_KEYS = (
    "run", "split", "threshold_rule", "threshold", "variable", "level", *_METRIC_PART, "z", "p_value", "notes"
)  # fmt: skip
"""Keys of a subgroup record (``subgroups.json`` / ``subgroups.csv``)."""


def receptor_status(values: pd.Series) -> pd.Series:
    """``Positive``/``Negative`` (any case, surrounding spaces ignored); anything else becomes missing."""
    normal = values.astype("string").str.strip().str.lower()
    return normal.map({"positive": "Positive", "negative": "Negative"}).astype(object)


def split_at(values: pd.Series, cutoff: float, names: tuple[str, str], *, index: pd.Index) -> pd.Series:
    """``names[0]`` where a value is ``<= cutoff``, ``names[1]`` above it, ``None`` where it is missing.

    Args:
        values: numbers (anything else counts as missing), one per patient.
        cutoff: the boundary, in the unit of ``values``.
        names: the two level names.
        index: the patient ids of the result.
    """
    import pandas as pd

    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    levels = pd.Series(np.where(numbers <= cutoff, *names), index=index, dtype=object)
    return levels.where(~np.isnan(numbers), None)


def subgroup_levels(
    cohort: pd.DataFrame, *, age_cutoff: float = 50.0, t_stage_cutoff_cm: float = 2.0
) -> dict[str, tuple[pd.Series, tuple[str, str]]]:
    """Each patient's level of every subgroup variable the cohort supports.

    Args:
        cohort: ``load_cohort(...).table``: indexed by ``patient_id`` (str) with ``age``,
            ``tumour_size_cm``, ``er``, ``pr``, ``her2``; a missing column skips its variable.
        age_cutoff: years; ``<=`` goes to the first level.
        t_stage_cutoff_cm: cm; ``<=`` is T1.

    Returns:
        ``{variable: (levels, (first, second))}``; ``levels`` is indexed by patient id and holds
        ``None`` where the value is missing or unrecognised.
    """
    import pandas as pd

    out: dict[str, tuple[pd.Series, tuple[str, str]]] = {}
    index = cohort.index.astype(str)
    if "age" in cohort:
        names = (f"<= {age_cutoff:g} y", f"> {age_cutoff:g} y")
        out["age"] = (split_at(cohort["age"], age_cutoff, names, index=index), names)
    if "tumour_size_cm" in cohort:
        names = (f"T1 (<= {t_stage_cutoff_cm:g} cm)", f"T2 (> {t_stage_cutoff_cm:g} cm)")
        out["t_stage"] = (split_at(cohort["tumour_size_cm"], t_stage_cutoff_cm, names, index=index), names)
    for column in ("er", "pr", "her2"):
        if column in cohort:
            levels = receptor_status(cohort[column]).to_numpy()
            out[column] = (pd.Series(levels, index=index, dtype=object), ("Positive", "Negative"))
    return out


def _empty_metrics() -> dict[str, Any]:
    record: dict[str, Any] = {key: None for key in _METRIC_PART}
    record.update({"n": 0, "tp": 0, "fp": 0, "tn": 0, "fn": 0})
    return record


def _level_test(labels: np.ndarray, scores: np.ndarray, masks: Sequence[np.ndarray]) -> AucTest:
    """DeLong test of the AUC difference between two levels (undefined where a level lacks a class)."""
    tests: list[tuple[float | None, float | None]] = []
    for mask in masks:
        if mask.any() and 0 < labels[mask].sum() < mask.sum():
            tests.append(delong_se(scores[mask], labels[mask]))
        else:
            tests.append((None, None))
    (auc_a, se_a), (auc_b, se_b) = tests
    return unpaired_auc_test(auc_a, se_a, auc_b, se_b)


def _variable_records(
    where: Mapping[str, Any],
    level_of: np.ndarray,
    names: tuple[str, str],
    labels: np.ndarray,
    scores: np.ndarray,
    thresholds: Mapping[str, Threshold],
    *,
    alpha: float,
) -> list[dict[str, Any]]:
    """One record per threshold rule and level of one variable of one run.

    Args:
        where: ``run``, ``split`` and ``variable`` of the records.
        level_of: ``(n,)`` level name of each patient, ``None``/NaN where unknown.
        names: the two level names.
        labels, scores: ``(n,)`` 0/1 labels and class-1 probabilities.
        thresholds: ``{rule: Threshold}`` of the run.
        alpha: 1 - confidence level.
    """
    import pandas as pd

    masks = [level_of == name for name in names]
    test = _level_test(labels, scores, masks)
    n_unknown = int(pd.isna(level_of).sum())
    records = []
    for rule, cut in thresholds.items():
        for name, mask in zip(names, masks, strict=True):
            if mask.any():
                metrics = binary_metrics(labels[mask], scores[mask], threshold=cut.value, alpha=alpha)
            else:
                metrics = {**_empty_metrics(), "notes": ["no patients in this subgroup: every metric undefined"]}
            notes = list(metrics["notes"])
            if test.note:
                notes.append(f"subgroup test: {test.note}")
            if n_unknown:
                notes.append(f"{n_unknown} patient(s) without a known {SUBGROUP_TITLES[where['variable']]} left out")
            record = {**metrics, **where, "threshold_rule": rule, "threshold": cut.value}
            record.update(level=name, z=test.z, p_value=test.p_value, notes=notes)
            records.append({key: record.get(key) for key in SUBGROUP_KEYS})
    return records


def subgroup_records(
    runs: Sequence[RunPredictions],
    cohort: pd.DataFrame,
    *,
    thresholds: Mapping[str, Mapping[str, Threshold]],
    alpha: float = 0.05,
    age_cutoff: float = 50.0,
    t_stage_cutoff_cm: float = 2.0,
    split: str = "test",
) -> tuple[list[dict[str, Any]], list[str]]:
    """Subgroup records of every binary run's ``split`` for each threshold rule.

    Args:
        runs: the runs; multi-class runs and runs without ``split`` are skipped.
        cohort: the cohort table (see :func:`subgroup_levels`).
        thresholds: ``{run: {rule: Threshold}}`` from :func:`~balnmp_cache.report.binary.evaluate_binary`.
        alpha: 1 - confidence level.
        age_cutoff, t_stage_cutoff_cm: subgroup cut-offs (years, cm).
        split: the split analysed.

    Returns:
        Records with :data:`SUBGROUP_KEYS` (``z`` and ``p_value`` test the AUC difference of the two
        levels and repeat on both rows) and warnings (patients missing from the cohort, variables
        the cohort lacks).
    """
    warnings: list[str] = []
    variables = subgroup_levels(cohort, age_cutoff=age_cutoff, t_stage_cutoff_cm=t_stage_cutoff_cm)
    lacking = [SUBGROUP_TITLES[v] for v in SUBGROUP_TITLES if v not in variables]
    if lacking:
        warnings.append(f"the cohort has no column for the subgroup(s) {', '.join(lacking)}: skipped")
    records: list[dict[str, Any]] = []
    for run in runs:
        if not run.is_binary or split not in run.splits:
            continue
        frame = run.split_frame(split)
        ids = frame["patient_id"].astype(str).to_numpy()
        labels, scores = frame["label"].to_numpy(dtype=int), frame["p_1"].to_numpy(dtype=np.float64)
        unknown = sorted(set(ids) - set(cohort.index.astype(str)), key=natural_key)
        if unknown:
            warnings.append(
                f"run {run.name}: {len(unknown)} {split} patient(s) are not in the cohort and are left out of the "
                f"subgroups (e.g. {', '.join(unknown[:5])})"
            )
        for variable, (levels, names) in variables.items():
            level_of = levels[~levels.index.duplicated()].reindex(ids).to_numpy()
            where = {"run": run.name, "split": split, "variable": variable}
            records += _variable_records(where, level_of, names, labels, scores, thresholds[run.name], alpha=alpha)
    return records, warnings
