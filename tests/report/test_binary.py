"""Binary metrics: Youden on val applied unchanged to the other splits, counts, and every edge case."""

from __future__ import annotations

import json

import numpy as np
import pytest

from balnmp_cache.report.binary import (
    METRIC_KEYS,
    REQUIRED_METRIC_KEYS,
    binary_metrics,
    evaluate_binary,
    youden_threshold,
)
from balnmp_cache.report.intervals import clopper_pearson
from balnmp_cache.report.predictions import load_predictions

from .conftest import synthetic_labels, write_predictions


def _brute_force_youden(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    best = (-np.inf, -np.inf)
    for t in sorted(set(scores), reverse=True):
        predicted = scores >= t
        j = predicted[labels == 1].mean() - predicted[labels == 0].mean()
        if j > best[1] + 1e-15:
            best = (t, j)
    return best


def test_youden_tie_goes_to_the_highest_threshold():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.4, 0.7, 0.8])
    threshold, j = youden_threshold(labels, scores)  # J = 2/3 at 0.7 and at 0.4
    assert threshold == pytest.approx(0.7) and j == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(4))
def test_youden_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    labels = np.array([0, 1, *rng.integers(0, 2, 38)])
    scores = np.round(1 / (1 + np.exp(-(labels + rng.normal(size=40)))), 2)  # ties included
    threshold, j = youden_threshold(labels, scores)
    ref_t, ref_j = _brute_force_youden(labels, scores)
    assert threshold == pytest.approx(ref_t) and j == pytest.approx(ref_j)


def test_youden_of_one_class_is_none():
    assert youden_threshold(np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9])) is None


def test_youden_is_chosen_on_val_and_applied_unchanged_to_test(make_binary_run):
    run = load_predictions(make_binary_run("image", strength=1.2, seed=4))
    records, thresholds = evaluate_binary([run], rules=["0.5", "youden"], alpha=0.05)
    expected, _ = youden_threshold(run.labels("val"), run.scores("val"))
    cut = thresholds["image"]["youden"]
    assert cut.value == pytest.approx(expected) and cut.note.startswith("Youden-optimal on V (val)")
    for split in ("train", "val", "test"):
        record = next(r for r in records if r["split"] == split and r["threshold_rule"] == "youden")
        labels, scores = run.labels(split), run.scores(split)
        predicted = scores >= expected
        assert record["threshold"] == pytest.approx(expected)
        assert record["tp"] == int(np.sum(predicted & (labels == 1)))
        assert record["fp"] == int(np.sum(predicted & (labels == 0)))
        assert record["tn"] + record["fn"] == int(np.sum(~predicted))
    half = [r for r in records if r["threshold_rule"] == "0.5"]
    assert len(half) == 3 and all(r["threshold"] == 0.5 and r["threshold_note"] is None for r in half)
    assert all(tuple(r) == METRIC_KEYS for r in records)
    assert set(REQUIRED_METRIC_KEYS) <= set(METRIC_KEYS)


def test_youden_falls_back_without_val(tmp_path):
    frame = synthetic_labels(0, {"train": 10, "test": 10})
    p1 = np.linspace(0.05, 0.95, 20)
    run = load_predictions(write_predictions(tmp_path / "r", frame, np.column_stack([1 - p1, p1])))
    records, thresholds = evaluate_binary([run], rules=["youden"])
    assert thresholds["r"]["youden"].value == 0.5
    assert thresholds["r"]["youden"].fell_back
    assert all(r["threshold_note"].startswith("fallback to 0.5: the run has no val split") for r in records)


def test_youden_falls_back_when_val_has_one_class(tmp_path):
    frame = synthetic_labels(0, {"train": 10, "val": 6, "test": 10})
    frame.loc[frame["split"] == "val", "label"] = 1
    p1 = np.linspace(0.05, 0.95, len(frame))
    run = load_predictions(write_predictions(tmp_path / "r", frame, np.column_stack([1 - p1, p1])))
    _, thresholds = evaluate_binary([run], rules=["youden"])
    assert thresholds["r"]["youden"].value == 0.5
    assert "only one class" in thresholds["r"]["youden"].note


def test_counts_and_intervals_of_a_known_split():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    scores = np.array([0.9, 0.8, 0.55, 0.3, 0.6, 0.2, 0.1, 0.4, 0.45, 0.05])
    record = binary_metrics(labels, scores, threshold=0.5)
    assert (record["tp"], record["fp"], record["tn"], record["fn"]) == (3, 1, 5, 1)
    assert record["acc"] == pytest.approx(0.8) and record["acc_ci"] == pytest.approx(clopper_pearson(8, 10))
    assert record["sens"] == pytest.approx(0.75) and record["sens_ci"] == pytest.approx(clopper_pearson(3, 4))
    assert record["spec"] == pytest.approx(5 / 6) and record["spec_ci"] == pytest.approx(clopper_pearson(5, 6))
    assert record["ppv"] == pytest.approx(0.75) and record["npv"] == pytest.approx(5 / 6)
    assert record["auc"] == pytest.approx(20 / 24)  # 20 of the 24 positive-negative pairs ordered correctly
    assert record["auc_ci"] == pytest.approx(clopper_pearson(20 / 24 * 10, 10))
    assert record["auc_delong_ci"][0] < record["auc"] <= record["auc_delong_ci"][1]
    assert record["notes"] == []


def _assert_clean(record):
    json.dumps(record, allow_nan=False)  # never NaN
    for name in ("auc", "acc", "sens", "spec", "ppv", "npv"):
        value, ci = record[name], record[f"{name}_ci"]
        if value is not None:
            assert 0.0 <= value <= 1.0
            assert ci is not None and 0.0 <= ci[0] <= value <= ci[1] <= 1.0


def test_one_class_split_gives_null_auc_with_a_note():
    record = binary_metrics(np.array([0, 0, 0]), np.array([0.2, 0.7, 0.4]), threshold=0.5)
    _assert_clean(record)
    assert record["auc"] is None and record["auc_ci"] is None and record["auc_delong_ci"] is None
    assert record["sens"] is None and record["spec"] == pytest.approx(2 / 3)
    assert any("AUC undefined" in n for n in record["notes"])
    assert any("sensitivity" in n for n in record["notes"])


def test_sensitivity_zero_and_one_have_clopper_pearson_intervals():
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    none_positive = binary_metrics(labels, np.array([0.4, 0.3, 0.2, 0.1, 0.1, 0.2, 0.3]), threshold=0.5)
    _assert_clean(none_positive)
    assert none_positive["sens"] == 0.0 and none_positive["sens_ci"] == pytest.approx(clopper_pearson(0, 3))
    assert none_positive["ppv"] is None and "no patient was predicted positive" in " ".join(none_positive["notes"])
    all_positive = binary_metrics(labels, np.full(7, 0.9), threshold=0.5)
    _assert_clean(all_positive)
    assert all_positive["sens"] == 1.0 and all_positive["sens_ci"][1] == 1.0
    assert all_positive["ppv_ci_method"].startswith("clopper-pearson (fallback")
    assert all_positive["npv"] is None


def test_tied_scores_give_auc_one_half_and_a_defined_threshold():
    labels = np.array([0, 1, 0, 1, 0, 1])
    record = binary_metrics(labels, np.full(6, 0.5), threshold=0.5)
    _assert_clean(record)
    assert record["auc"] == pytest.approx(0.5)
    assert record["tp"] == 3 and record["fp"] == 3  # score >= 0.5 is positive, as in the official code
    assert youden_threshold(labels, np.full(6, 0.5)) == (0.5, 0.0)


def test_a_single_patient_and_a_single_positive_stay_defined():
    one = binary_metrics(np.array([1]), np.array([0.7]), threshold=0.5)
    _assert_clean(one)
    assert one["n"] == 1 and one["auc"] is None and one["acc"] == 1.0
    few = binary_metrics(np.array([1, 0, 0, 0]), np.array([0.9, 0.1, 0.2, 0.6]), threshold=0.5)
    _assert_clean(few)
    assert few["auc"] == 1.0 and few["auc_se"] is None and few["auc_delong_ci"] is None
    assert any("DeLong" in n for n in few["notes"])
