"""Fast DeLong (midranks) against the direct O(m·n) placement-value computation of DeLong et al. (1988)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from balnmp_cache.report.delong import delong_covariance, delong_se, paired_delong_test, unpaired_auc_test


def _psi(x: float, y: float) -> float:
    return 1.0 if x > y else 0.5 if x == y else 0.0


def _direct(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and covariance from explicit pairwise comparisons (DeLong, DeLong & Clarke-Pearson 1988)."""
    scores = np.atleast_2d(scores)
    pos, neg = scores[:, labels == 1], scores[:, labels == 0]
    k, m, n = scores.shape[0], pos.shape[1], neg.shape[1]
    v10 = np.array([[sum(_psi(pos[r, i], neg[r, j]) for j in range(n)) / n for i in range(m)] for r in range(k)])
    v01 = np.array([[sum(_psi(pos[r, i], neg[r, j]) for i in range(m)) / m for j in range(n)] for r in range(k)])
    aucs = v10.mean(axis=1)
    s10 = np.array([[np.sum((v10[a] - aucs[a]) * (v10[b] - aucs[b])) / (m - 1) for b in range(k)] for a in range(k)])
    s01 = np.array([[np.sum((v01[a] - aucs[a]) * (v01[b] - aucs[b])) / (n - 1) for b in range(k)] for a in range(k)])
    return aucs, s10 / m + s01 / n


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_delong_equals_direct_placement_values_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = np.array([0, 1, *rng.integers(0, 2, 23)])
    # Rounded scores create ties within and across classes; three correlated scores.
    base = labels + rng.normal(scale=0.9, size=labels.size)
    scores = np.vstack([np.round(base + rng.normal(scale=s, size=labels.size), 1) for s in (0.2, 0.6, 1.5)])
    aucs, cov = delong_covariance(scores, labels)
    ref_aucs, ref_cov = _direct(scores, labels)
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-12)
    for row, auc in zip(scores, aucs, strict=True):
        assert auc == pytest.approx(roc_auc_score(labels, row))


def test_small_hand_case():
    # positives 0.9, 0.6, 0.4; negatives 0.6, 0.3: psi = [[1, 1], [.5, 1], [0, 1]] -> AUC 4.5/6.
    labels = np.array([1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.6, 0.4, 0.6, 0.3])
    auc, se = delong_se(scores, labels)
    assert auc == pytest.approx(0.75)
    v10 = np.array([1.0, 0.75, 0.5])
    v01 = np.array([0.5, 1.0])
    expected = np.var(v10, ddof=1) / 3 + np.var(v01, ddof=1) / 2
    assert se == pytest.approx(math.sqrt(expected))


def test_se_undefined_with_a_single_positive():
    auc, se = delong_se(np.array([0.9, 0.1, 0.2, 0.3]), np.array([1, 0, 0, 0]))
    assert auc == 1.0 and se is None


def test_paired_test_matches_the_formula():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 40)
    a = labels + rng.normal(size=40)
    b = 0.3 * labels + rng.normal(size=40)
    result = paired_delong_test(a, b, labels)
    aucs, cov = _direct(np.vstack([a, b]), labels)
    z = (aucs[0] - aucs[1]) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert result.z == pytest.approx(z)
    assert result.p_value == pytest.approx(2 * norm.sf(abs(z)))
    assert result.auc_a == pytest.approx(aucs[0]) and result.auc_b == pytest.approx(aucs[1])


def test_paired_test_of_identical_scores_is_z0_p1_with_a_note():
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.1, 0.8, 0.4, 0.3, 0.9, 0.2])
    result = paired_delong_test(scores, scores.copy(), labels)
    assert result.z == 0.0 and result.p_value == 1.0
    assert "variance" in result.note


def test_paired_test_with_one_class_is_undefined():
    result = paired_delong_test(np.array([0.1, 0.2]), np.array([0.3, 0.4]), np.array([1, 1]))
    assert result.z is None and result.p_value is None and result.auc_a is None
    assert "one class" in result.note


def test_unpaired_test():
    result = unpaired_auc_test(0.9, 0.03, 0.7, 0.04)
    assert result.z == pytest.approx(0.2 / 0.05)
    assert result.p_value == pytest.approx(2 * norm.sf(4.0))
    assert unpaired_auc_test(None, None, 0.7, 0.04).p_value is None
    assert unpaired_auc_test(0.8, None, 0.7, 0.04).note.startswith("a DeLong SE is undefined")
    assert unpaired_auc_test(1.0, 0.0, 1.0, 0.0).p_value == 1.0
    different = unpaired_auc_test(1.0, 0.0, 0.0, 0.0)
    assert different.z is None and "differ" in different.note
