"""Metrics of tasks with more than two classes (task 2: N0 vs N+(1-2) vs N+(>2)).

The predicted class is the argmax of ``p_0 … p_{C-1}`` (ties go to the lower class index, as
``numpy.argmax``). Reported per run and split: the macro one-vs-rest AUC, accuracy, per-class
one-vs-rest AUC, precision and recall with Clopper–Pearson intervals, and the confusion matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from balnmp_cache.report.bootstrap import percentile_ci, stratified_resamples
from balnmp_cache.report.intervals import proportion
from balnmp_cache.report.predictions import RunPredictions

__all__ = ["auc_intervals", "evaluate_multiclass", "mann_whitney_auc", "multiclass_metrics"]


def mann_whitney_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """AUC of ``scores`` for the boolean ``positive`` (ties count 1/2); ``None`` with one class."""
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if not n_pos or not n_neg:
        return None
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _macro(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    aucs = [a for c in range(probabilities.shape[1]) if (a := mann_whitney_auc(labels == c, probabilities[:, c]))
            is not None]
    return float(np.mean(aucs)) if aucs else None


def _micro(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    one_hot = labels[:, None] == np.arange(probabilities.shape[1])[None, :]
    return mann_whitney_auc(one_hot.ravel(), probabilities.ravel())


def auc_intervals(
    labels: np.ndarray, probabilities: np.ndarray, *, n_boot: int, seed: int, alpha: float = 0.05
) -> dict[str, Any]:
    """``macro_auc_ci``, ``micro_auc`` and ``micro_auc_ci``: percentile intervals over the stratified bootstrap.

    The micro AUC pools every (patient, class) pair: the AUC of all ``p_c`` against ``label == c``.
    """
    labels = np.asarray(labels).astype(int)
    resamples = stratified_resamples(labels, n_boot=n_boot, seed=seed)
    return {
        "macro_auc_ci": percentile_ci(lambda i: _macro(labels[i], probabilities[i]), resamples, alpha=alpha),
        "micro_auc": _micro(labels, probabilities),
        "micro_auc_ci": percentile_ci(lambda i: _micro(labels[i], probabilities[i]), resamples, alpha=alpha),
    }


def multiclass_metrics(
    labels: np.ndarray, probabilities: np.ndarray, *, classes: Sequence[str], alpha: float = 0.05
) -> dict[str, Any]:
    """Metrics of one split of a multi-class run.

    Args:
        labels: ``(n,)`` integer labels in ``0..C-1``.
        probabilities: ``(n, C)`` class probabilities.
        classes: ``C`` class names.
        alpha: 1 - confidence level.

    Returns:
        ``n``, ``macro_auc`` (mean of the defined one-vs-rest AUCs, ``None`` if none is defined),
        ``acc``/``acc_ci``, ``per_class`` (a list of dicts with ``class``, ``support``, ``auc_ovr``,
        ``precision``, ``precision_ci``, ``recall``, ``recall_ci``), ``confusion`` (``C × C`` counts,
        rows true class, columns predicted class) and ``notes``.
    """
    from sklearn.metrics import confusion_matrix, roc_auc_score

    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n_classes = probabilities.shape[1]
    predicted = probabilities.argmax(axis=1)
    confusion = confusion_matrix(labels, predicted, labels=list(range(n_classes)))  # (C, C)
    notes: list[str] = []
    per_class = []
    aucs = []
    for c, name in enumerate(classes):
        is_c = labels == c
        auc = None
        if is_c.all() or not is_c.any():
            amount = "only" if is_c.all() else "no"
            notes.append(f"one-vs-rest AUC of class {name} undefined: the split has {amount} patients of it")
        else:
            auc = float(roc_auc_score(is_c, probabilities[:, c]))
            aucs.append(auc)
        hits = int(confusion[c, c])
        predicted_c, support = int(confusion[:, c].sum()), int(confusion[c, :].sum())
        precision = proportion(hits, predicted_c, alpha=alpha, what=f"precision of {name}", why="never predicted")
        recall = proportion(hits, support, alpha=alpha, what=f"recall of {name}", why=f"no patients of {name}")
        notes += [e.note for e in (precision, recall) if e.note]
        row: dict[str, Any] = {"class": name, "support": int(is_c.sum()), "auc_ovr": auc}
        for key, estimate in (("precision", precision), ("recall", recall)):
            row[key] = estimate.value
            row[f"{key}_ci"] = list(estimate.ci) if estimate.ci else None
        per_class.append(row)
    if aucs and len(aucs) < n_classes:
        notes.append(f"macro AUC averages the {len(aucs)} of {n_classes} classes whose one-vs-rest AUC is defined")
    if not aucs:
        notes.append("macro AUC undefined: no class has a defined one-vs-rest AUC")
    acc = proportion(int(np.trace(confusion)), len(labels), alpha=alpha, what="accuracy")
    return {
        "n": len(labels),
        "macro_auc": float(np.mean(aucs)) if aucs else None,
        "acc": acc.value,
        "acc_ci": list(acc.ci) if acc.ci else None,
        "per_class": per_class,
        "confusion": confusion.astype(int).tolist(),
        "notes": notes,
    }


def evaluate_multiclass(
    runs: Sequence[RunPredictions], *, alpha: float = 0.05, n_boot: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """One record per multi-class run and split: ``run``, ``split``, ``classes``, :func:`multiclass_metrics`
    and :func:`auc_intervals` (bootstrap with ``n_boot`` resamples and ``seed``)."""
    records = []
    for run in runs:
        if run.is_binary:
            continue
        for split in run.splits:
            labels, probabilities = run.labels(split), run.probabilities(split)
            metrics = multiclass_metrics(labels, probabilities, classes=run.classes, alpha=alpha)
            intervals = auc_intervals(labels, probabilities, n_boot=n_boot, seed=seed, alpha=alpha)
            records.append({"run": run.name, "split": split, "classes": list(run.classes), **metrics, **intervals})
    return records
