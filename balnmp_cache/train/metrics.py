"""Patient-level merging of bag probabilities and the metrics used for model selection and summaries."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

__all__ = ["accuracy", "merge_bags", "patient_auc", "split_metrics"]


def merge_bags(
    bag_probs: np.ndarray, bag_patient: np.ndarray, n_patients: int, *, how: Literal["mean", "max"] = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """A patient's class probabilities from its bags' probabilities.

    ``mean`` (the official rule) averages the probability vectors. ``max`` takes the vector of
    the patient's most positive bag, the bag with the lowest ``p_0``; for a binary task that is
    the bag with the highest ``p_1`` (the official ``--merge_method max``), and rows still sum to 1.

    Args:
        bag_probs: (B, C) probabilities of each bag.
        bag_patient: (B,) patient index of each bag.
        n_patients: P.
        how: ``mean`` or ``max``.

    Returns:
        (P, C) float64 probabilities (NaN rows for patients without bags) and (P,) bag counts.
    """
    n_bags = np.bincount(bag_patient, minlength=n_patients)
    n_classes = bag_probs.shape[1]
    probs = np.full((n_patients, n_classes), np.nan)
    if how == "mean":
        sums = np.zeros((n_patients, n_classes))
        np.add.at(sums, bag_patient, bag_probs.astype(np.float64))
        has = n_bags > 0
        probs[has] = sums[has] / n_bags[has, None]
    else:
        # Lowest p_0 first within each patient, then keep the first bag of each patient.
        order = np.lexsort((bag_probs[:, 0], bag_patient))
        first = order[np.r_[True, bag_patient[order][1:] != bag_patient[order][:-1]]] if len(order) else order
        probs[bag_patient[first]] = bag_probs[first].astype(np.float64)
    return probs, n_bags


def patient_auc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """ROC AUC of patient probabilities: of ``p_1`` when binary, macro one-vs-rest otherwise.

    Returns ``None`` when it is undefined (a class missing among the labels, or no patients).
    """
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    n_classes = probs.shape[1]
    if len(labels) == 0 or len(np.unique(labels)) < n_classes:
        return None
    if n_classes == 2:
        return float(roc_auc_score(labels, probs[:, 1]))
    normalised = probs / probs.sum(axis=1, keepdims=True)
    return float(roc_auc_score(labels, normalised, multi_class="ovr", average="macro", labels=list(range(n_classes))))


def accuracy(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Share of patients classified correctly: ``p_1 >= 0.5`` when binary (official), argmax otherwise."""
    if len(labels) == 0:
        return None
    predicted = (probs[:, 1] >= 0.5).astype(int) if probs.shape[1] == 2 else probs.argmax(axis=1)
    return float(np.mean(predicted == np.asarray(labels)))


def split_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float | int | None]:
    """``{"n", "auc", "acc"}`` of one split."""
    auc = patient_auc(labels, probs)
    auc = None if auc is None or math.isnan(auc) else auc
    return {"n": len(labels), "auc": auc, "acc": accuracy(labels, probs)}
