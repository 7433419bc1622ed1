"""Calibration of a binary run's probabilities: reliability bins, Brier score, calibration slope and intercept.

* Reliability bins: ``n_bins`` equal-width bins of ``[0, 1]``; a score on an inner edge goes to the
  lower bin (``numpy.searchsorted`` on the inner edges, as scikit-learn's ``calibration_curve`` with
  ``strategy="uniform"``). Each bin gives its patients, mean predicted probability and observed
  fraction of positives (``None`` in an empty bin).
* Brier score: ``mean((p - y)^2)``, with a percentile interval over the stratified bootstrap of
  :mod:`balnmp_cache.report.bootstrap`.
* Calibration slope ``b``: the logistic recalibration ``logit P(y = 1) = a + b · logit(p)`` fitted by
  maximum likelihood (no penalty); calibration intercept (calibration-in-the-large): ``a`` with the
  slope fixed at 1 (``logit(p)`` as an offset). Ideal: slope 1, intercept 0. Scores are clipped to
  ``[1e-6, 1 - 1e-6]`` before the logit. Undefined (``None`` with a note) with one class or when the
  fit does not converge (separated classes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from balnmp_cache.report.bootstrap import percentile_ci

__all__ = ["CALIBRATION_KEYS", "brier", "calibration_fit", "calibration_record", "reliability_bins"]

CALIBRATION_KEYS = ("brier", "brier_ci", "calibration_intercept", "calibration_slope", "calibration_bins")
"""The calibration keys added to every binary ``metrics.json`` record."""

_CLIP = 1e-6
_MAX_ITER = 100


def brier(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean squared difference between the class-1 probability and the 0/1 label."""
    return float(np.mean((np.asarray(scores, dtype=np.float64) - np.asarray(labels)) ** 2))


def reliability_bins(labels: np.ndarray, scores: np.ndarray, *, n_bins: int = 10) -> list[dict[str, Any]]:
    """One dict per bin: ``low``, ``high``, ``n``, ``mean_predicted``, ``fraction_positive``."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], scores)
    totals = np.bincount(ids, minlength=n_bins)
    sums = np.bincount(ids, weights=scores, minlength=n_bins)
    hits = np.bincount(ids, weights=labels, minlength=n_bins)
    bins = []
    for k in range(n_bins):
        n = int(totals[k])
        bins.append({
            "low": float(edges[k]), "high": float(edges[k + 1]), "n": n,
            "mean_predicted": float(sums[k] / n) if n else None,
            "fraction_positive": float(hits[k] / n) if n else None,
        })
    return bins


def _logit(scores: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(scores, dtype=np.float64), _CLIP, 1 - _CLIP)
    return np.log(p / (1 - p))


def _newton(design: np.ndarray, labels: np.ndarray, offset: np.ndarray) -> np.ndarray | None:
    """Maximum-likelihood logistic coefficients of ``labels`` on ``design`` (``(n, k)``) plus ``offset``."""
    beta = np.zeros(design.shape[1])
    for _ in range(_MAX_ITER):
        eta = np.clip(offset + design @ beta, -30.0, 30.0)
        mu = 1.0 / (1.0 + np.exp(-eta))
        weight = mu * (1 - mu)
        hessian = design.T @ (design * weight[:, None])
        try:
            step = np.linalg.solve(hessian, design.T @ (labels - mu))
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            return beta if np.all(np.abs(beta) < 1e3) else None
    return None


def calibration_fit(labels: np.ndarray, scores: np.ndarray) -> tuple[float | None, float | None, list[str]]:
    """``(intercept, slope, notes)``: calibration-in-the-large and the logistic recalibration slope."""
    labels = np.asarray(labels, dtype=np.float64)
    if labels.min() == labels.max():
        return None, None, ["calibration slope and intercept undefined: the split has one class"]
    x = _logit(scores)
    ones = np.ones((len(x), 1))
    intercept = _newton(ones, labels, x)
    full = _newton(np.column_stack([ones, x]), labels, np.zeros_like(x))
    notes = []
    if intercept is None or full is None:
        notes.append("calibration fit did not converge (separated classes): slope or intercept undefined")
    return (
        None if intercept is None else float(intercept[0]),
        None if full is None else float(full[1]),
        notes,
    )


def calibration_record(
    labels: np.ndarray, scores: np.ndarray, resamples: np.ndarray, *, alpha: float = 0.05, n_bins: int = 10
) -> tuple[dict[str, Any], list[str]]:
    """The :data:`CALIBRATION_KEYS` of one split and the notes explaining any ``None``."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    intercept, slope, notes = calibration_fit(labels, scores)
    record = {
        "brier": brier(labels, scores),
        "brier_ci": percentile_ci(lambda i: brier(labels[i], scores[i]), resamples, alpha=alpha),
        "calibration_intercept": intercept,
        "calibration_slope": slope,
        "calibration_bins": reliability_bins(labels, scores, n_bins=n_bins),
    }
    return record, notes
