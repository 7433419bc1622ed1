"""Bootstrap bands and calibration against independent computations: scikit-learn and a plain bootstrap loop."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, precision_recall_curve, roc_curve

from balnmp_cache.report.bootstrap import GRID, pr_band, roc_band, stratified_resamples
from balnmp_cache.report.calibration import calibration_fit, reliability_bins
from balnmp_cache.report.uncertainty import average_precision, evaluate_curves


def _data(n: int = 60, seed: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.round(1 / (1 + np.exp(-(2 * labels - 1 + rng.normal(size=n)))), 2)  # rounded: ties
    return labels, scores


def _plain_bootstrap(labels: np.ndarray, n_boot: int, seed: int) -> list[np.ndarray]:
    """The documented draw, written out: per resample, per class in label order, n_c draws with replacement."""
    rng = np.random.default_rng(seed)
    negatives, positives = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    draws = []
    for _ in range(n_boot):
        neg = negatives[rng.integers(0, len(negatives), len(negatives))]
        pos = positives[rng.integers(0, len(positives), len(positives))]
        draws.append(np.concatenate([neg, pos]))
    return draws


def test_roc_band_equals_a_plain_bootstrap_of_sklearn_curves():
    labels, scores = _data()
    n_boot, seed = 200, 7
    band = roc_band(labels, scores, stratified_resamples(labels, n_boot=n_boot, seed=seed))
    curves = []
    for idx in _plain_bootstrap(labels, n_boot, seed):
        fpr, tpr, _ = roc_curve(labels[idx], scores[idx], drop_intermediate=False)
        assert labels[idx].sum() == labels.sum()  # stratified: class counts kept
        curves.append([tpr[fpr <= x].max() for x in GRID])
    low, high = np.quantile(np.array(curves), [0.025, 0.975], axis=0)
    np.testing.assert_allclose(band.low, low, atol=1e-12)
    np.testing.assert_allclose(band.high, high, atol=1e-12)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(band.value, [tpr[fpr <= x].max() for x in GRID], atol=1e-12)
    assert np.all(band.low <= band.value + 1e-12) and np.all(band.value <= band.high + 1e-12)
    assert np.any(band.high - band.low > 0.05)  # a real band, not a line


def test_pr_band_equals_a_plain_bootstrap_of_sklearn_curves():
    labels, scores = _data(seed=9)
    n_boot, seed = 150, 3
    band = pr_band(labels, scores, stratified_resamples(labels, n_boot=n_boot, seed=seed), alpha=0.1)
    curves = []
    for idx in _plain_bootstrap(labels, n_boot, seed):
        precision, recall, _ = precision_recall_curve(labels[idx], scores[idx], drop_intermediate=False)
        precision, recall = precision[:-1], recall[:-1]  # sklearn's last point (recall 0, precision 1) is no threshold
        curves.append([precision[recall >= r].max() for r in GRID])
    low, high = np.quantile(np.array(curves), [0.05, 0.95], axis=0)
    np.testing.assert_allclose(band.low, low, atol=1e-12)
    np.testing.assert_allclose(band.high, high, atol=1e-12)


def test_average_precision_is_sklearns():
    for seed in range(5):
        labels, scores = _data(seed=seed)
        assert average_precision(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_reliability_bins_match_sklearn_calibration_curve():
    labels, scores = _data(n=200, seed=11)
    scores[:3] = [0.1, 0.5, 0.9]  # on inner edges
    for n_bins in (5, 10):
        bins = reliability_bins(labels, scores, n_bins=n_bins)
        fraction, predicted = calibration_curve(labels, scores, n_bins=n_bins, strategy="uniform")
        full = [b for b in bins if b["n"]]
        np.testing.assert_allclose([b["fraction_positive"] for b in full], fraction, atol=1e-12)
        np.testing.assert_allclose([b["mean_predicted"] for b in full], predicted, atol=1e-12)
        assert sum(b["n"] for b in bins) == len(labels)
        assert all(b["mean_predicted"] is None for b in bins if not b["n"])


def test_brier_and_its_interval_match_sklearn_and_a_plain_bootstrap():
    labels, scores = _data(n=80, seed=2)
    frame_run = _FakeRun(labels, scores)
    curves = evaluate_curves([frame_run], n_boot=300, seed=5)[("r", "test")]
    assert curves.record["brier"] == pytest.approx(brier_score_loss(labels, scores), abs=1e-15)
    values = [brier_score_loss(labels[i], scores[i]) for i in _plain_bootstrap(labels, 300, 5)]
    np.testing.assert_allclose(curves.record["brier_ci"], np.quantile(values, [0.025, 0.975]), atol=1e-12)


def test_calibration_slope_and_intercept_are_maximum_likelihood_fits():
    from scipy.optimize import minimize_scalar

    labels, scores = _data(n=300, seed=8)
    intercept, slope, notes = calibration_fit(labels, scores)
    x = np.log(scores / (1 - scores))
    fit = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(x[:, None], labels)
    assert slope == pytest.approx(fit.coef_[0, 0], abs=1e-5)

    def nll(a: float) -> float:
        eta = a + x
        return float(np.sum(np.logaddexp(0, eta) - labels * eta))

    assert intercept == pytest.approx(minimize_scalar(nll, bounds=(-5, 5), method="bounded",
                                                      options={"xatol": 1e-10}).x, abs=1e-6)
    assert notes == []
    # overconfident scores (logits doubled) give a slope near 1/2
    _, half, _ = calibration_fit(labels, 1 / (1 + np.exp(-2 * x)))
    assert half == pytest.approx(slope / 2, rel=1e-6)


def test_calibration_undefined_cases_say_why():
    assert calibration_fit(np.zeros(5), np.full(5, 0.3))[:2] == (None, None)
    separated = calibration_fit(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert separated[1] is None and "did not converge" in separated[2][0]


class _FakeRun:
    """The three methods evaluate_curves reads, over one test split (a real RunPredictions needs files)."""

    def __init__(self, labels: np.ndarray, scores: np.ndarray) -> None:
        self.name, self.is_binary, self.splits = "r", True, ["test"]
        self._labels, self._scores = labels, scores

    def labels(self, split: str) -> np.ndarray:
        return self._labels

    def scores(self, split: str) -> np.ndarray:
        return self._scores


def test_legend_names_drop_shared_parts_and_digests():
    from balnmp_cache.report.plots import short_names

    names = ["task0-cacheA-balnmp-image-N10-fold0-seed0-1c04c4c2", "task0-cacheA-balnmp-image-N10-fold1-seed0-0f805996",
             "task0-any-clinical_only-N10-fold0-seed0-cd28a009"]
    assert short_names(names) == {names[0]: "cacheA-balnmp-image-fold0", names[1]: "cacheA-balnmp-image-fold1",
                                  names[2]: "any-clinical_only-fold0"}
    assert short_names(["a-x-11111111", "a-x-22222222"]) == {"a-x-11111111": "a-x-11111111",
                                                             "a-x-22222222": "a-x-22222222"}  # would collide
    assert short_names(["image"]) == {"image": "image"}
    long = [f"task0-efficientnet_lite0-avg-7e66a377d190-balnmp-image-N10-fold{f}-splitseed0-seed{s}-1c04c4c{f}"
            for f in range(3) for s in range(2)] + ["task0-any-clinical_only-N10-fold0-splitseed0-seed0-00000000"]
    short = short_names(long)
    assert len(set(short.values())) == 7 and all(len(v) <= 44 for v in short.values())
    assert short[long[5]].endswith("fold2-seed1") and short[long[5]].startswith("efficientnet_l…")  # its middle cut
