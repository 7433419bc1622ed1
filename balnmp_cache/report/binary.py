"""Binary metrics per run, split and threshold rule: AUC, ACC, SENS, SPEC, PPV, NPV with intervals.

A patient is predicted positive when its score (the probability of class 1) is ``>= threshold``,
as in the official code. Two threshold rules exist: ``"0.5"`` and ``"youden"``, the cut-off that
maximises ``sens + spec - 1`` on the run's val split, applied unchanged to every split.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from balnmp_cache.report.delong import delong_se
from balnmp_cache.report.intervals import auc_binomial_ci, predictive_value, proportion, z_value
from balnmp_cache.report.predictions import RunPredictions

__all__ = [
    "METRIC_KEYS",
    "REQUIRED_METRIC_KEYS",
    "Threshold",
    "binary_metrics",
    "choose_threshold",
    "evaluate_binary",
    "youden_threshold",
]

log = logging.getLogger(__name__)

PROPORTIONS = ("auc", "acc", "sens", "spec", "ppv", "npv")
REQUIRED_METRIC_KEYS = (
    *("run", "split", "threshold_rule", "threshold", "n", "tp", "fp", "tn", "fn"),
    *PROPORTIONS,
    *(f"{name}_ci" for name in PROPORTIONS),
)
"""The keys every ``metrics.json`` record has (the issue's contract)."""
METRIC_KEYS = (
    *("run", "split", "threshold_rule", "threshold", "threshold_note", "n", "tp", "fp", "tn", "fn"),
    *("auc", "auc_ci", "auc_se", "auc_delong_ci", "acc", "acc_ci", "sens", "sens_ci", "spec", "spec_ci"),
    *("ppv", "ppv_ci", "ppv_ci_method", "npv", "npv_ci", "npv_ci_method", "notes"),
)
"""All keys of a ``metrics.json`` record, in order: the required ones plus documented extras."""


@dataclass(frozen=True)
class Threshold:
    """A cut-off on the class-1 probability and how it was chosen.

    Attributes:
        rule: ``"0.5"`` or ``"youden"``.
        value: the cut-off; ``score >= value`` is predicted positive.
        note: how it was chosen (Youden's J on val) or why it fell back to 0.5; ``None`` for ``"0.5"``.
    """

    rule: str
    value: float
    note: str | None = None

    @property
    def fell_back(self) -> bool:
        return self.rule == "youden" and self.note is not None and self.note.startswith("fallback")


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float] | None:
    """The Youden-optimal cut-off of one split.

    Maximises ``J = sens + spec - 1`` over the ROC thresholds (the distinct scores, ``score >= t``
    positive; the ``+inf`` point where nothing is positive is not a candidate). ``J`` is compared in
    exact integer arithmetic and among equal ``J`` the highest threshold wins.

    Args:
        labels: ``(n,)`` 0/1 labels.
        scores: ``(n,)`` class-1 probabilities.

    Returns:
        ``(threshold, J)``, or ``None`` when the split holds only one class.
    """
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # last index of each distinct score
    tps = np.cumsum(hits)[last]  # true positives with ``score >= ranked[last]``
    fps = last + 1 - tps
    # J * n_pos * n_neg in integers, so tied J values compare exactly; argmax keeps the highest threshold.
    numerators = tps * n_neg - fps * n_pos
    best = int(np.argmax(numerators))
    return float(ranked[last[best]]), float(numerators[best] / (n_pos * n_neg))


def choose_threshold(run: RunPredictions, rule: str) -> Threshold:
    """The cut-off of ``rule`` for a binary run (Youden on its val split, with a documented fallback to 0.5)."""
    if rule == "0.5":
        return Threshold("0.5", 0.5)
    if "val" not in run.splits:
        return Threshold("youden", 0.5, "fallback to 0.5: the run has no val split to choose a Youden cut-off on")
    chosen = youden_threshold(run.labels("val"), run.scores("val"))
    if chosen is None:
        return Threshold("youden", 0.5, "fallback to 0.5: the val split has only one class")
    value, j = chosen
    return Threshold("youden", value, f"Youden-optimal on V (val), J = {j:.3f}")


def _auc(labels: np.ndarray, scores: np.ndarray, alpha: float) -> tuple[dict[str, Any], list[str]]:
    n = len(labels)
    n_pos = int(labels.sum())
    if n_pos in (0, n):
        present = "1 (positive)" if n_pos else "0 (negative)"
        note = f"AUC undefined: the split has only class {present}"
        return {"auc": None, "auc_ci": None, "auc_se": None, "auc_delong_ci": None}, [note]
    auc, se = delong_se(scores, labels)
    notes = []
    delong_ci = None
    if se is None:
        notes.append("DeLong SE and interval undefined: fewer than 2 positives or 2 negatives")
    else:
        half = z_value(alpha) * se
        delong_ci = [max(0.0, auc - half), min(1.0, auc + half)]
    ci = auc_binomial_ci(auc, n, alpha=alpha)
    return {"auc": auc, "auc_ci": list(ci) if ci else None, "auc_se": se, "auc_delong_ci": delong_ci}, notes


def binary_metrics(labels: np.ndarray, scores: np.ndarray, *, threshold: float, alpha: float = 0.05) -> dict[str, Any]:
    """Confusion counts and the six metrics with intervals for one split.

    Args:
        labels: ``(n,)`` 0/1 labels, ``n >= 1``.
        scores: ``(n,)`` class-1 probabilities.
        threshold: ``score >= threshold`` is predicted positive.
        alpha: 1 - confidence level.

    Returns:
        A dict with ``n``, ``tp``, ``fp``, ``tn``, ``fn``, each metric, ``<metric>_ci`` (``[low, high]``),
        ``auc_se``, ``auc_delong_ci``, ``ppv_ci_method``, ``npv_ci_method`` and ``notes`` (a list of
        sentences explaining every ``None`` and every fallback).
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    predicted = scores >= threshold
    tp = int(np.sum(predicted & (labels == 1)))
    fp = int(np.sum(predicted & (labels == 0)))
    tn = int(np.sum(~predicted & (labels == 0)))
    fn = int(np.sum(~predicted & (labels == 1)))
    n = len(labels)
    record: dict[str, Any] = {"n": n, "tp": tp, "fp": fp, "tn": tn, "fn": fn}
    auc_part, notes = _auc(labels, scores, alpha)
    record.update(auc_part)
    estimates = {
        "acc": proportion(tp + tn, n, alpha=alpha, what="accuracy", why="no patients"),
        "sens": proportion(tp, tp + fn, alpha=alpha, what="sensitivity", why="no positive patients"),
        "spec": proportion(tn, tn + fp, alpha=alpha, what="specificity", why="no negative patients"),
        "ppv": predictive_value("ppv", tp=tp, fp=fp, tn=tn, fn=fn, alpha=alpha),
        "npv": predictive_value("npv", tp=tp, fp=fp, tn=tn, fn=fn, alpha=alpha),
    }
    for name, estimate in estimates.items():
        record[name] = estimate.value
        record[f"{name}_ci"] = list(estimate.ci) if estimate.ci else None
        if estimate.note:
            notes.append(estimate.note)
    record["ppv_ci_method"] = estimates["ppv"].method
    record["npv_ci_method"] = estimates["npv"].method
    record["notes"] = notes
    return record


def evaluate_binary(
    runs: Sequence[RunPredictions], *, rules: Sequence[str], alpha: float = 0.05
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Threshold]]]:
    """``metrics.json`` records for every binary run × split × threshold rule.

    Returns:
        The records (keys :data:`METRIC_KEYS`) and the thresholds used, ``{run: {rule: Threshold}}``.
    """
    records: list[dict[str, Any]] = []
    thresholds: dict[str, dict[str, Threshold]] = {}
    for run in runs:
        if not run.is_binary:
            continue
        thresholds[run.name] = {rule: choose_threshold(run, rule) for rule in rules}
        for rule, cut in thresholds[run.name].items():
            if cut.fell_back:
                log.debug("run %s: %s", run.name, cut.note)
            for split in run.splits:
                metrics = binary_metrics(run.labels(split), run.scores(split), threshold=cut.value, alpha=alpha)
                record = {"run": run.name, "split": split, "threshold_rule": rule, "threshold": cut.value}
                record.update(threshold_note=cut.note, **metrics)
                records.append({key: record[key] for key in METRIC_KEYS})
    return records, thresholds
