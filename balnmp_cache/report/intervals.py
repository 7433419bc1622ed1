"""Confidence intervals in the conventions of MedCalc, the statistics software the paper used.

* proportions (accuracy, sensitivity, specificity): exact Clopper–Pearson intervals;
* predictive values (PPV, NPV): the "standard logit" intervals of Mercaldo, Lau and Zhou (2007),
  computed from sensitivity, specificity and the sample prevalence; where the logit is undefined
  (a predictive value of 0 or 1, or a variance of 0) the Clopper–Pearson interval of the
  predicted-positive (PPV) or predicted-negative (NPV) counts is used instead and the method says so
  (MedCalc manual, "Diagnostic test": https://www.medcalc.org/manual/diagnostic-test.php);
* the AUC: an exact binomial interval with ``n`` = number of patients (the paper's convention:
  AUC 0.831, n = 218 gives 0.775–0.878, as in its abstract).

Every function returns ``None`` where a value is undefined instead of NaN; the edge cases are listed
in ``docs/report-statistics.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Estimate",
    "auc_binomial_ci",
    "clopper_pearson",
    "logit_npv_ci",
    "logit_ppv_ci",
    "predictive_value",
    "proportion",
    "z_value",
]

CI = tuple[float, float]

CP_METHOD = "clopper-pearson"
LOGIT_METHOD = "logit (Mercaldo 2007)"
CP_FALLBACK_METHOD = "clopper-pearson (fallback: logit undefined)"


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval; ``None`` fields mean "undefined" and ``note`` says why.

    Attributes:
        value: the estimate in [0, 1], or ``None``.
        ci: ``(low, high)`` in [0, 1], or ``None``.
        method: how the interval was computed (``clopper-pearson``, ``logit (Mercaldo 2007)`` …).
        note: a sentence explaining an undefined value or a fallback, else ``None``.
    """

    value: float | None
    ci: CI | None
    method: str | None = None
    note: str | None = None


def z_value(alpha: float) -> float:
    """Two-sided standard-normal quantile, e.g. 1.95996 for ``alpha=0.05``."""
    from scipy.stats import norm

    return float(norm.ppf(1.0 - alpha / 2.0))


def clopper_pearson(successes: float, n: float, *, alpha: float = 0.05) -> CI | None:
    """Exact (Clopper–Pearson) interval of a binomial proportion ``successes / n``.

    The beta-quantile form accepts a non-integer ``successes`` (used for the AUC interval).

    Args:
        successes: number of successes, ``0 <= successes <= n``.
        n: number of trials.
        alpha: 1 - confidence level.

    Returns:
        ``(low, high)``; ``low`` is 0 when ``successes == 0`` and ``high`` is 1 when
        ``successes == n``; ``None`` when ``n == 0``.
    """
    from scipy.stats import beta

    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n]; got {successes} of {n}")
    low = 0.0 if successes <= 0 else float(beta.ppf(alpha / 2.0, successes, n - successes + 1))
    high = 1.0 if successes >= n else float(beta.ppf(1.0 - alpha / 2.0, successes + 1, n - successes))
    return (low, high)


def proportion(
    successes: int, n: int, *, alpha: float = 0.05, what: str = "proportion", why: str = "its denominator is 0"
) -> Estimate:
    """``successes / n`` with its Clopper–Pearson interval.

    At ``n == 0`` the value and interval are ``None`` and the note reads ``"<what> undefined: <why>"``.
    """
    if n == 0:
        return Estimate(None, None, None, f"{what} undefined: {why}")
    return Estimate(successes / n, clopper_pearson(successes, n, alpha=alpha), CP_METHOD)


def auc_binomial_ci(auc: float, n: int, *, alpha: float = 0.05) -> CI | None:
    """Exact binomial interval of an AUC treated as a proportion of ``n`` patients (MedCalc / paper).

    Args:
        auc: the area under the ROC curve in [0, 1].
        n: number of patients (positives plus negatives) of the split.
    """
    return clopper_pearson(auc * n, n, alpha=alpha)


def _expit(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def logit_ppv_ci(
    *, sens: float, spec: float, prevalence: float, n_pos: int, n_neg: int, alpha: float = 0.05
) -> CI | None:
    """Standard logit interval of the PPV (Mercaldo, Lau & Zhou 2007, Stat Med 26:2170).

    ``logit(PPV) = log(p·Se / ((1-p)(1-Sp)))`` with variance
    ``(1-Se)/(n_pos·Se) + Sp/(n_neg·(1-Sp))``; the interval is back-transformed with the expit.

    Returns:
        ``(low, high)``, or ``None`` where the logit is undefined or degenerate: a PPV of 0 or 1
        (Se = 0 or Sp = 1), a variance of 0 (Se = 1 and Sp = 0), no positives or no negatives.
    """
    if not (0 < sens <= 1 and 0 <= spec < 1 and n_pos > 0 and n_neg > 0 and 0 < prevalence < 1):
        return None
    var = (1 - sens) / (n_pos * sens) + spec / (n_neg * (1 - spec))
    if var <= 0:
        return None
    centre = math.log(prevalence * sens / ((1 - prevalence) * (1 - spec)))
    half = z_value(alpha) * math.sqrt(var)
    return (_expit(centre - half), _expit(centre + half))


def logit_npv_ci(
    *, sens: float, spec: float, prevalence: float, n_pos: int, n_neg: int, alpha: float = 0.05
) -> CI | None:
    """Standard logit interval of the NPV (Mercaldo, Lau & Zhou 2007).

    ``logit(NPV) = log((1-p)·Sp / (p·(1-Se)))`` with variance
    ``Se/(n_pos·(1-Se)) + (1-Sp)/(n_neg·Sp)``.

    Returns:
        ``(low, high)``, or ``None`` where the logit is undefined or degenerate: an NPV of 0 or 1
        (Sp = 0 or Se = 1), a variance of 0 (Se = 0 and Sp = 1), no positives or no negatives.
    """
    if not (0 <= sens < 1 and 0 < spec <= 1 and n_pos > 0 and n_neg > 0 and 0 < prevalence < 1):
        return None
    var = sens / (n_pos * (1 - sens)) + (1 - spec) / (n_neg * spec)
    if var <= 0:
        return None
    centre = math.log((1 - prevalence) * spec / (prevalence * (1 - sens)))
    half = z_value(alpha) * math.sqrt(var)
    return (_expit(centre - half), _expit(centre + half))


def predictive_value(
    kind: Literal["ppv", "npv"], *, tp: int, fp: int, tn: int, fn: int, alpha: float = 0.05
) -> Estimate:
    """PPV or NPV from a confusion matrix, with the logit interval or its Clopper–Pearson fallback.

    Args:
        kind: ``"ppv"`` (tp / (tp + fp)) or ``"npv"`` (tn / (tn + fn)).
        tp, fp, tn, fn: confusion counts (positive = class 1).
        alpha: 1 - confidence level.

    Returns:
        The estimate; ``value`` is ``None`` when nothing was predicted positive (PPV) or negative (NPV).
    """
    n_pos, n_neg = tp + fn, tn + fp
    hits, predicted = (tp, tp + fp) if kind == "ppv" else (tn, tn + fn)
    side = "positive" if kind == "ppv" else "negative"
    if predicted == 0:
        return Estimate(None, None, None, f"{kind.upper()} undefined: no patient was predicted {side}")
    value = hits / predicted
    if n_pos > 0 and n_neg > 0:
        sens, spec, prevalence = tp / n_pos, tn / n_neg, n_pos / (n_pos + n_neg)
        fn_ci = logit_ppv_ci if kind == "ppv" else logit_npv_ci
        ci = fn_ci(sens=sens, spec=spec, prevalence=prevalence, n_pos=n_pos, n_neg=n_neg, alpha=alpha)
        if ci is not None:
            return Estimate(value, ci, LOGIT_METHOD)
    note = (
        f"{kind.upper()} interval: the logit interval is undefined (a predictive value of 0 or 1, a zero variance "
        f"or a class absent); Clopper-Pearson on the {hits}/{predicted} predicted {side} patients is used instead"
    )
    return Estimate(value, clopper_pearson(hits, predicted, alpha=alpha), CP_FALLBACK_METHOD, note)
