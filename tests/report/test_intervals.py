"""Every interval against an independent computation: binomial tails, closed forms, the logit formula in counts."""

from __future__ import annotations

import math

import pytest
from scipy.optimize import brentq
from scipy.stats import binom, norm

from balnmp_cache.report.intervals import (
    CP_FALLBACK_METHOD,
    LOGIT_METHOD,
    auc_binomial_ci,
    clopper_pearson,
    logit_npv_ci,
    logit_ppv_ci,
    predictive_value,
    proportion,
)


def _cp_by_tails(x: int, n: int, alpha: float) -> tuple[float, float]:
    """Clopper-Pearson by inverting the binomial tests: P(X >= x | p_L) = alpha/2, P(X <= x | p_U) = alpha/2."""
    low = 0.0 if x == 0 else brentq(lambda p: binom.sf(x - 1, n, p) - alpha / 2, 1e-12, 1 - 1e-12, xtol=1e-14)
    high = 1.0 if x == n else brentq(lambda p: binom.cdf(x, n, p) - alpha / 2, 1e-12, 1 - 1e-12, xtol=1e-14)
    return low, high


@pytest.mark.parametrize(("x", "n"), [(0, 10), (1, 10), (5, 10), (9, 10), (10, 10), (27, 34), (84, 218), (1, 1)])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_clopper_pearson_inverts_the_binomial_tests(x, n, alpha):
    low, high = clopper_pearson(x, n, alpha=alpha)
    ref_low, ref_high = _cp_by_tails(x, n, alpha)
    assert low == pytest.approx(ref_low, abs=1e-9)
    assert high == pytest.approx(ref_high, abs=1e-9)


@pytest.mark.parametrize("n", [1, 7, 30])
def test_clopper_pearson_closed_forms_at_the_edges(n):
    # x = 0: upper = 1 - (alpha/2)^(1/n); x = n: lower = (alpha/2)^(1/n) (e.g. 0.3085 for 0 of 10).
    assert clopper_pearson(0, n) == pytest.approx((0.0, 1 - 0.025 ** (1 / n)))
    assert clopper_pearson(n, n) == pytest.approx((0.025 ** (1 / n), 1.0))


def test_clopper_pearson_zero_of_ten_textbook_value():
    assert clopper_pearson(0, 10)[1] == pytest.approx(0.3085, abs=5e-5)


def test_proportion_with_empty_denominator_is_undefined_with_a_note():
    estimate = proportion(0, 0, what="sensitivity")
    assert estimate.value is None and estimate.ci is None
    assert "sensitivity" in estimate.note


def test_auc_binomial_interval_reproduces_the_papers_abstract():
    # Xu et al. 2021 (Front. Oncol. 11:759007), abstract: DL-CNB+C test AUC 0.831 (95% CI 0.775-0.878), n = 218.
    low, high = auc_binomial_ci(0.831, 218)
    assert round(low, 3) == 0.775
    assert round(high, 3) == 0.878


def test_auc_binomial_interval_at_perfect_and_zero_auc():
    assert auc_binomial_ci(1.0, 30) == pytest.approx((0.025 ** (1 / 30), 1.0))
    assert auc_binomial_ci(0.0, 30) == pytest.approx((0.0, 1 - 0.025 ** (1 / 30)))


def _logit_by_counts(
    hits: int, misses: int, n_hits_class: int, n_misses_class: int, alpha: float
) -> tuple[float, float]:
    """expit(ln(hits/misses) +- z sqrt(1/hits - 1/n_a + 1/misses - 1/n_b)): Mercaldo's variance written in counts."""
    z = norm.ppf(1 - alpha / 2)
    centre = math.log(hits / misses)
    half = z * math.sqrt(1 / hits - 1 / n_hits_class + 1 / misses - 1 / n_misses_class)
    expit = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    return expit(centre - half), expit(centre + half)


@pytest.mark.parametrize(("tp", "fn", "fp", "tn"), [(55, 29, 23, 111), (11, 3, 2, 14), (1, 9, 1, 20), (40, 1, 30, 2)])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_logit_predictive_values_match_the_formula_in_counts(tp, fn, fp, tn, alpha):
    n_pos, n_neg = tp + fn, tn + fp
    sens, spec, prev = tp / n_pos, tn / n_neg, n_pos / (n_pos + n_neg)
    ppv = logit_ppv_ci(sens=sens, spec=spec, prevalence=prev, n_pos=n_pos, n_neg=n_neg, alpha=alpha)
    npv = logit_npv_ci(sens=sens, spec=spec, prevalence=prev, n_pos=n_pos, n_neg=n_neg, alpha=alpha)
    assert ppv == pytest.approx(_logit_by_counts(tp, fp, n_pos, n_neg, alpha), abs=1e-12)
    assert npv == pytest.approx(_logit_by_counts(tn, fn, n_neg, n_pos, alpha), abs=1e-12)
    estimate = predictive_value("ppv", tp=tp, fp=fp, tn=tn, fn=fn, alpha=alpha)
    assert estimate.value == pytest.approx(tp / (tp + fp))
    assert estimate.method == LOGIT_METHOD and estimate.note is None
    assert estimate.ci[0] < estimate.value < estimate.ci[1]


@pytest.mark.parametrize(
    ("kind", "counts", "hits", "predicted"),
    [
        ("ppv", {"tp": 10, "fp": 0, "tn": 5, "fn": 3}, 10, 10),  # specificity 1: PPV = 1
        ("ppv", {"tp": 0, "fp": 4, "tn": 5, "fn": 3}, 0, 4),  # sensitivity 0: PPV = 0
        ("ppv", {"tp": 6, "fp": 9, "tn": 0, "fn": 0}, 6, 15),  # everyone positive: zero logit variance
        ("npv", {"tp": 10, "fp": 2, "tn": 5, "fn": 0}, 5, 5),  # sensitivity 1: NPV = 1
        ("npv", {"tp": 4, "fp": 3, "tn": 0, "fn": 2}, 0, 2),  # specificity 0: NPV = 0
        ("npv", {"tp": 0, "fp": 0, "tn": 7, "fn": 3}, 7, 10),  # everyone negative
        ("ppv", {"tp": 5, "fp": 0, "tn": 0, "fn": 2}, 5, 5),  # no negatives at all
    ],
)
def test_predictive_value_falls_back_to_clopper_pearson_and_says_so(kind, counts, hits, predicted):
    estimate = predictive_value(kind, **counts)
    assert estimate.value == pytest.approx(hits / predicted)
    assert estimate.method == CP_FALLBACK_METHOD
    assert estimate.ci == pytest.approx(_cp_by_tails(hits, predicted, 0.05), abs=1e-9)
    assert "Clopper-Pearson" in estimate.note


def test_predictive_value_with_nothing_predicted_is_undefined():
    estimate = predictive_value("ppv", tp=0, fp=0, tn=8, fn=4)
    assert estimate.value is None and estimate.ci is None
    assert "no patient was predicted positive" in estimate.note
