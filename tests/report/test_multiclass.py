"""The three-class path: macro one-vs-rest AUC, per-class precision and recall, the confusion matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_score, recall_score, roc_auc_score

from balnmp_cache.report.intervals import clopper_pearson
from balnmp_cache.report.multiclass import multiclass_metrics

CLASSES = ("N0", "N+(1-2)", "N+(>2)")


def _probabilities(labels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(labels), 3))
    logits[np.arange(len(labels)), labels] += 1.2
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_three_class_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, *rng.integers(0, 3, 57)])
    probabilities = _probabilities(labels, 1)
    result = multiclass_metrics(labels, probabilities, classes=CLASSES)
    predicted = probabilities.argmax(axis=1)
    expected = roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    assert result["macro_auc"] == pytest.approx(expected)
    assert result["confusion"] == confusion_matrix(labels, predicted).tolist()
    precision = precision_score(labels, predicted, average=None)
    recall = recall_score(labels, predicted, average=None)
    for c, row in enumerate(result["per_class"]):
        assert row["class"] == CLASSES[c] and row["support"] == int(np.sum(labels == c))
        assert row["precision"] == pytest.approx(precision[c]) and row["recall"] == pytest.approx(recall[c])
        hits = int(np.sum((predicted == c) & (labels == c)))
        assert row["recall_ci"] == pytest.approx(clopper_pearson(hits, int(np.sum(labels == c))))
        assert row["precision_ci"] == pytest.approx(clopper_pearson(hits, int(np.sum(predicted == c))))
        assert row["auc_ovr"] == pytest.approx(roc_auc_score(labels == c, probabilities[:, c]))
    assert result["acc"] == pytest.approx(np.mean(predicted == labels))
    assert result["notes"] == []


def test_a_class_absent_from_the_split_is_noted_not_nan():
    labels = np.array([0, 0, 1, 1, 0, 1])
    probabilities = _probabilities(labels, 2)
    result = multiclass_metrics(labels, probabilities, classes=CLASSES)
    json.dumps(result, allow_nan=False)
    third = result["per_class"][2]
    assert third["auc_ovr"] is None and third["recall"] is None and third["support"] == 0
    expected = np.mean([roc_auc_score(labels == c, probabilities[:, c]) for c in (0, 1)])
    assert result["macro_auc"] == pytest.approx(expected)
    assert any("2 of 3 classes" in n for n in result["notes"])


def test_a_single_class_split_has_no_macro_auc():
    labels = np.array([1, 1, 1])
    result = multiclass_metrics(labels, _probabilities(labels, 3), classes=CLASSES)
    json.dumps(result, allow_nan=False)
    assert result["macro_auc"] is None
    assert any("macro AUC undefined" in n for n in result["notes"])


def test_micro_and_macro_auc_intervals_match_sklearn_and_contain_the_estimate():
    from sklearn.metrics import roc_auc_score

    from balnmp_cache.report.multiclass import auc_intervals

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 90)
    logits = rng.normal(size=(90, 3)) + 1.5 * np.eye(3)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    intervals = auc_intervals(labels, probabilities, n_boot=200, seed=1)
    one_hot = np.eye(3)[labels]
    assert intervals["micro_auc"] == pytest.approx(roc_auc_score(one_hot, probabilities, average="micro"), abs=1e-12)
    macro = roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    low, high = intervals["macro_auc_ci"]
    assert low < macro < high and high - low > 0.02
    low, high = intervals["micro_auc_ci"]
    assert low < intervals["micro_auc"] < high
