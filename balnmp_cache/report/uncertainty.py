"""Per binary run and split: bootstrap ROC and PR bands, average precision and calibration, from one resampling.

The resamples of a split are drawn once (:func:`~balnmp_cache.report.bootstrap.stratified_resamples`,
seed ``bootstrap_seed``) and shared by the ROC band, the PR band, the AP interval and the Brier interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from balnmp_cache.report.bootstrap import Band, percentile_ci, pr_band, roc_band, stratified_resamples
from balnmp_cache.report.calibration import calibration_record
from balnmp_cache.report.predictions import RunPredictions

__all__ = ["CURVE_KEYS", "SplitCurves", "average_precision", "evaluate_curves"]

CURVE_KEYS = ("ap", "ap_ci")
"""The precision-recall keys added to every binary ``metrics.json`` record."""


@dataclass(frozen=True)
class SplitCurves:
    """What one binary run's split adds to the report: bands (``None`` with one class) and records.

    Attributes:
        labels, scores: ``(n,)`` the split's labels and class-1 probabilities (sorted by patient).
        roc, pr: the pointwise bootstrap bands.
        record: ``ap``, ``ap_ci`` and the calibration keys, merged into the split's ``metrics.json`` records.
        notes: sentences explaining every ``None`` of ``record``.
    """

    labels: np.ndarray
    scores: np.ndarray
    roc: Band | None
    pr: Band | None
    record: dict[str, Any]
    notes: list[str]


def average_precision(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Average precision (step-wise area under the PR curve, as scikit-learn's); ``None`` without positives."""
    labels = np.asarray(labels).astype(np.int64)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return None
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    ranked, hits = np.asarray(scores, dtype=np.float64)[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tps = np.cumsum(hits)[last]
    precision, recall = tps / (last + 1), tps / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def _split_curves(
    labels: np.ndarray, scores: np.ndarray, *, n_boot: int, seed: int, alpha: float, n_bins: int
) -> SplitCurves:
    resamples = stratified_resamples(labels, n_boot=n_boot, seed=seed)
    calibration, notes = calibration_record(labels, scores, resamples, alpha=alpha, n_bins=n_bins)
    both = 0 < int(labels.sum()) < len(labels)
    ap = average_precision(labels, scores)
    record = {
        "ap": ap,
        "ap_ci": percentile_ci(lambda i: average_precision(labels[i], scores[i]), resamples, alpha=alpha)
        if both else None,
        **calibration,
    }
    if not both:
        notes.append("ROC and PR bands and the AP interval undefined: the split has one class")
    roc = roc_band(labels, scores, resamples, alpha=alpha) if both else None
    pr = pr_band(labels, scores, resamples, alpha=alpha) if both else None
    return SplitCurves(labels, scores, roc, pr, record, notes)


def evaluate_curves(
    runs: Sequence[RunPredictions], *, n_boot: int, seed: int, alpha: float = 0.05, n_bins: int = 10
) -> dict[tuple[str, str], SplitCurves]:
    """``{(run, split): SplitCurves}`` for every binary run and split (each split resampled with ``seed``)."""
    curves = {}
    for run in runs:
        if not run.is_binary:
            continue
        for split in run.splits:
            labels, scores = run.labels(split), run.scores(split)
            curves[(run.name, split)] = _split_curves(
                labels, scores, n_boot=n_boot, seed=seed, alpha=alpha, n_bins=n_bins
            )
    return curves
