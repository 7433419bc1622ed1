"""DeLong's AUC variance and tests, computed with midranks (Sun & Xu 2014, IEEE SPL 21:1389).

For ``m`` positives ``X`` and ``n`` negatives ``Y`` the placement value of a positive is the share of
negatives it outscores (ties count 1/2), ``V10(X_i) = mean_j psi(X_i, Y_j)``, and that of a negative is
``V01(Y_j) = mean_i psi(X_i, Y_j)``. The AUC is ``mean V10``; DeLong, DeLong & Clarke-Pearson (1988)
estimate the covariance of the AUCs of ``k`` scores on the same patients as
``S = S10 / m + S01 / n`` with ``S10``, ``S01`` the sample covariances (ddof 1) of the placement values.
Midranks give every placement value in ``O((m + n) log(m + n))``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["AucTest", "delong_covariance", "delong_se", "paired_delong_test", "placement_values", "unpaired_auc_test"]

_EPS = 1e-12


@dataclass(frozen=True)
class AucTest:
    """Result of a test for a difference of two AUCs; ``z``/``p_value`` are ``None`` when undefined."""

    auc_a: float | None
    auc_b: float | None
    z: float | None
    p_value: float | None
    note: str | None = None


def placement_values(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and placement values of ``k`` score vectors on the same patients.

    Args:
        scores: ``(k, N)`` or ``(N,)`` scores, higher meaning class 1.
        labels: ``(N,)`` 0/1 labels with at least one of each.

    Returns:
        ``aucs (k,)``, ``v10 (k, m)`` for the positives and ``v01 (k, n)`` for the negatives.
    """
    from scipy.stats import rankdata

    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))  # (k, N)
    labels = np.asarray(labels).astype(bool)
    pos, neg = scores[:, labels], scores[:, ~labels]  # (k, m), (k, n)
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError("placement values need at least one positive and one negative")
    ranks_all = rankdata(np.concatenate([pos, neg], axis=1), axis=1)  # midranks, (k, m + n)
    ranks_pos = rankdata(pos, axis=1)
    ranks_neg = rankdata(neg, axis=1)
    v10 = (ranks_all[:, :m] - ranks_pos) / n  # negatives below each positive, ties 1/2
    v01 = 1.0 - (ranks_all[:, m:] - ranks_neg) / m  # positives above each negative, ties 1/2
    return v10.mean(axis=1), v10, v01


def delong_covariance(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """AUCs and DeLong's covariance matrix of ``k`` scores on the same patients.

    Args:
        scores: ``(k, N)`` or ``(N,)`` scores.
        labels: ``(N,)`` 0/1 labels with at least one of each.

    Returns:
        ``aucs (k,)`` and ``cov (k, k)``; ``cov`` is ``None`` with fewer than 2 positives or 2 negatives
        (the sample covariances of the placement values need two observations).
    """
    aucs, v10, v01 = placement_values(scores, labels)
    m, n = v10.shape[1], v01.shape[1]
    if m < 2 or n < 2:
        return aucs, None
    s10 = np.atleast_2d(np.cov(v10, ddof=1))  # (k, k)
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return aucs, s10 / m + s01 / n


def delong_se(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float | None]:
    """AUC and its DeLong standard error for one score vector ``(N,)``; the SE is ``None`` when undefined."""
    aucs, cov = delong_covariance(scores, labels)
    if cov is None:
        return float(aucs[0]), None
    return float(aucs[0]), math.sqrt(max(float(cov[0, 0]), 0.0))


def _two_sided_p(z: float) -> float:
    from scipy.stats import norm

    return float(2.0 * norm.sf(abs(z)))


def _z_test(diff: float, var: float) -> tuple[float | None, float | None, str | None]:
    if var > _EPS:
        z = diff / math.sqrt(var)
        return z, _two_sided_p(z), None
    if abs(diff) <= 1e-9:
        return 0.0, 1.0, "the variance of the AUC difference is 0 and the AUCs are equal: z = 0, p = 1"
    return None, None, "the variance of the AUC difference is 0 while the AUCs differ: the test is undefined"


def paired_delong_test(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray) -> AucTest:
    """DeLong's test of two correlated AUCs (two scores on the same patients).

    ``z = (A - B) / sqrt(S_aa + S_bb - 2 S_ab)``, two-sided normal p-value.

    Args:
        scores_a, scores_b: ``(N,)`` scores of the two runs, aligned patient by patient.
        labels: ``(N,)`` 0/1 labels.
    """
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return AucTest(None, None, None, None, "only one class present: AUCs and the test are undefined")
    aucs, cov = delong_covariance(np.vstack([scores_a, scores_b]), labels)
    auc_a, auc_b = float(aucs[0]), float(aucs[1])
    if cov is None:
        return AucTest(auc_a, auc_b, None, None, "DeLong's test needs at least 2 positives and 2 negatives")
    z, p, note = _z_test(auc_a - auc_b, float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]))
    return AucTest(auc_a, auc_b, z, p, note)


def unpaired_auc_test(auc_a: float | None, se_a: float | None, auc_b: float | None, se_b: float | None) -> AucTest:
    """Test of two AUCs from independent groups: ``z = (A - B) / sqrt(SE_a² + SE_b²)`` (DeLong SEs)."""
    if auc_a is None or auc_b is None:
        return AucTest(auc_a, auc_b, None, None, "an AUC is undefined (a group has one class): no test")
    if se_a is None or se_b is None:
        undefined = "a DeLong SE is undefined (fewer than 2 positives or negatives): no test"
        return AucTest(auc_a, auc_b, None, None, undefined)
    z, p, note = _z_test(auc_a - auc_b, se_a**2 + se_b**2)
    return AucTest(auc_a, auc_b, z, p, note)
