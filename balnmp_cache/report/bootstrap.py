"""Stratified, seeded bootstrap over patients: pointwise ROC and PR bands and percentile intervals.

Resampling (the same for every statistic, so a figure's band and a table's interval agree):
``rng = numpy.random.default_rng(seed)``; for each of the ``B`` resamples and for each class in label
order, ``n_c`` patients of that class are drawn with replacement (``rng.integers(0, n_c, n_c)`` indexes
the class's patients, sorted by patient). Every resample therefore keeps the split's class counts, so
the AUC, the ROC and the PR curve are defined in each. An interval is the ``alpha/2`` and
``1 - alpha/2`` quantiles (numpy's default linear interpolation) of the ``B`` values.

Pointwise bands are taken on fixed grids:

* ROC: at each false-positive rate ``x`` of the grid, the sensitivity of the curve there, i.e. the
  highest sensitivity among the ROC points with ``fpr <= x`` (the ROC points are one per distinct score,
  ``score >= t`` positive, plus ``(0, 0)``);
* PR: at each recall ``r``, the interpolated precision, the highest precision among the points with
  ``recall >= r``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "GRID",
    "Band",
    "percentile_ci",
    "pr_band",
    "pr_points",
    "precision_at",
    "roc_band",
    "roc_points",
    "stratified_resamples",
    "tpr_at",
]

GRID = np.linspace(0.0, 1.0, 101)
"""The false-positive rates (ROC) and recalls (PR) at which bands are computed."""


@dataclass(frozen=True)
class Band:
    """A curve on a fixed grid with its pointwise interval: ``grid``, ``value``, ``low``, ``high`` (each ``(G,)``)."""

    grid: np.ndarray
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray


def stratified_resamples(labels: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """``(B, n)`` indices of the bootstrap resamples (see the module docstring for the draw order)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    out = np.empty((n_boot, len(labels)), dtype=np.int64)
    for b in range(n_boot):
        out[b] = np.concatenate([idx[rng.integers(0, len(idx), len(idx))] for idx in strata])
    return out


def _counts(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives at each distinct score, highest score first (``score >= t`` positive)."""
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    tps = np.cumsum(hits)[last]
    return tps, last + 1 - tps


def roc_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``fpr``, ``tpr`` of the ROC, ``(0, 0)`` first, one point per distinct score (both classes needed)."""
    labels = np.asarray(labels).astype(np.int64)
    tps, fps = _counts(labels, np.asarray(scores, dtype=np.float64))
    n_pos = labels.sum()
    return np.r_[0.0, fps / (len(labels) - n_pos)], np.r_[0.0, tps / n_pos]


def tpr_at(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The highest sensitivity among the ROC points with ``fpr <= x``, for each ``x`` of ``grid``."""
    return tpr[np.searchsorted(fpr, grid, side="right") - 1]


def pr_points(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``recall``, ``precision`` at each distinct score, lowest recall first (positives needed)."""
    labels = np.asarray(labels).astype(np.int64)
    tps, fps = _counts(labels, np.asarray(scores, dtype=np.float64))
    return tps / labels.sum(), tps / (tps + fps)


def precision_at(recall: np.ndarray, precision: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The interpolated precision (highest precision among points with ``recall >= r``) at each ``r`` of ``grid``."""
    best_after = np.maximum.accumulate(precision[::-1])[::-1]
    index = np.minimum(np.searchsorted(recall, grid, side="left"), len(recall) - 1)
    return best_after[index]


def _band(curves: np.ndarray, value: np.ndarray, alpha: float) -> Band:
    low, high = np.quantile(curves, [alpha / 2, 1 - alpha / 2], axis=0)
    return Band(GRID, value, low, high)


def roc_band(labels: np.ndarray, scores: np.ndarray, resamples: np.ndarray, *, alpha: float = 0.05) -> Band:
    """The ROC at :data:`GRID` with its pointwise bootstrap interval over ``resamples`` (``(B, n)`` indices)."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    curves = np.stack([tpr_at(*roc_points(labels[i], scores[i]), GRID) for i in resamples])
    return _band(curves, tpr_at(*roc_points(labels, scores), GRID), alpha)


def pr_band(labels: np.ndarray, scores: np.ndarray, resamples: np.ndarray, *, alpha: float = 0.05) -> Band:
    """The interpolated PR curve at :data:`GRID` (recall) with its pointwise bootstrap interval."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    curves = np.stack([precision_at(*pr_points(labels[i], scores[i]), GRID) for i in resamples])
    return _band(curves, precision_at(*pr_points(labels, scores), GRID), alpha)


def percentile_ci(
    statistic: Callable[[np.ndarray], float | None], resamples: np.ndarray, *, alpha: float = 0.05
) -> list[float] | None:
    """``[low, high]`` percentile interval of ``statistic(indices)`` over the resamples (``None``-valued ones skipped).

    ``None`` when no resample gives a value.
    """
    values = [v for i in resamples if (v := statistic(i)) is not None]
    if not values:
        return None
    low, high = np.quantile(np.asarray(values, dtype=np.float64), [alpha / 2, 1 - alpha / 2])
    return [float(low), float(high)]
