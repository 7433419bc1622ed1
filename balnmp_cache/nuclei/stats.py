"""Per-WSI summaries of the nucleus features and their comparison between ALN classes.

**Summary of a WSI** (one number per feature, :func:`slide_summary`): the median over its nuclei not cut
by the patch edge for the shape features; for ``density`` all its nuclei over all its analysed tissue
(per mm², or per 10⁶ px² without MPP); for ``orientation`` the local orientation order, the nucleus-weighted
mean over patches of the debiased squared mean resultant length of the doubled axis angles (0 random,
1 parallel; see :mod:`balnmp_cache.nuclei.measure`). A per-WSI mean of raw angles would say only how the
slide lay on the scanner (and 1° and 179° are the same axis), so the paper's "orientation" comparison is
read here as how ordered the nuclei are.

**Comparison** (:func:`compare_features`): per feature, N0 vs N(+) medians and IQRs, the two-sided
Mann-Whitney U test (``scipy.stats.mannwhitneyu``), the rank-biserial correlation r = 2 U(+) / (n0 n+) - 1
(positive: N(+) tends higher; equals Cliff's delta), and the p-values adjusted over the features tested
(Holm, and Benjamini-Hochberg); across N0 / N+(1-2) / N+(>2) the Kruskal-Wallis test with the same
adjustments. :func:`attention_by_feature` averages a nucleus run's attention per feature by class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.nuclei.measure import unit_names

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FEATURES", "attention_by_feature", "bh_adjust", "compare_features", "holm_adjust", "rank_biserial",
    "slide_summary",
]  # fmt: skip

FEATURES: tuple[str, ...] = (
    "major_axis", "minor_axis", "area", "orientation", "circumference", "density", "circularity", "rectangularity",
)  # fmt: skip
"""The paper's eight nucleus features, in its order: the MIL instances and the family of tests."""

EXTRA = ("eccentricity", "solidity", "perimeter", "mean_hematoxylin_od")
"""Further per-nucleus measures summarised in ``summaries.csv`` (median), not tested."""

POSITIVE = ("N+(1-2)", "N+(>2)")


def slide_summary(nuclei: pd.DataFrame, patches: pd.DataFrame, *, physical: bool) -> dict[str, Any]:
    """One WSI's summary value per feature (see the module docstring), plus counts and units."""
    names = unit_names(physical)
    whole = nuclei[~nuclei["border"].to_numpy(dtype=bool)]
    out: dict[str, Any] = {"n_nuclei": len(nuclei), "n_patches": len(patches), "units": "um" if physical else "px"}
    for feature in (*FEATURES, *EXTRA):
        if feature == "density":
            tissue = float(patches[names["tissue"]].sum())
            out[feature] = float(patches["n_nuclei"].sum()) / tissue * 1e6 if tissue > 0 else float("nan")
        elif feature == "orientation":
            order = patches["orientation_order"].to_numpy(dtype=np.float64)
            weight = patches["n_nuclei"].to_numpy(dtype=np.float64)
            ok = np.isfinite(order)
            out[feature] = float(np.average(order[ok], weights=weight[ok])) if ok.any() else float("nan")
        else:
            column = whole[names.get(feature, feature)].to_numpy(dtype=np.float64)
            out[feature] = float(np.median(column)) if len(column) else float("nan")
    return out


def holm_adjust(p: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (in the input order)."""
    values = np.asarray(p, dtype=np.float64)
    m = len(values)
    order = np.argsort(values, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * values[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def bh_adjust(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values, in the input order)."""
    values = np.asarray(p, dtype=np.float64)
    m = len(values)
    order = np.argsort(values, kind="stable")
    scaled = values[order] * m / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def rank_biserial(u_positive: float, n_negative: int, n_positive: int) -> float:
    """2 U / (n0 n+) - 1 from the U statistic of the positive group."""
    return 2.0 * u_positive / (n_negative * n_positive) - 1.0


def _quartiles(values: np.ndarray) -> tuple[float, float, float]:
    if len(values) == 0:
        return (float("nan"),) * 3
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float(q2), float(q1), float(q3)


def _binary(feature: str, negative: np.ndarray, positive: np.ndarray) -> dict[str, Any]:
    from scipy.stats import mannwhitneyu

    record: dict[str, Any] = {"feature": feature, "n_n0": len(negative), "n_npos": len(positive)}
    for name, values in (("n0", negative), ("npos", positive)):
        median, q1, q3 = _quartiles(values)
        record.update({f"median_{name}": median, f"q1_{name}": q1, f"q3_{name}": q3})
    if len(negative) and len(positive):
        test = mannwhitneyu(positive, negative, alternative="two-sided")
        record.update(u=float(test.statistic), p=float(test.pvalue),
                      rank_biserial=rank_biserial(float(test.statistic), len(negative), len(positive)))  # fmt: skip
    else:
        record.update(u=None, p=None, rank_biserial=None)
    return record


def _three_class(values: dict[str, np.ndarray]) -> dict[str, Any]:
    from scipy.stats import kruskal

    record: dict[str, Any] = {}
    for label, key in (("N0", "n0"), ("N+(1-2)", "n12"), ("N+(>2)", "ngt2")):
        record[f"median_{key}"], record[f"q1_{key}"], record[f"q3_{key}"] = _quartiles(values[label])
        record[f"n_{key}"] = len(values[label])
    groups = [v for v in values.values() if len(v)]
    record["p_kw"] = float(kruskal(*groups).pvalue) if len(groups) >= 2 else None
    return record


def compare_features(summary: pd.DataFrame, aln_status: pd.Series) -> list[dict[str, Any]]:
    """One record per feature: N0 vs N(+) and the three-class test, with Holm and BH adjustments.

    Args:
        summary: per-WSI summaries (``summaries.csv``: ``patient_id`` and one column per feature).
        aln_status: ``N0`` / ``N+(1-2)`` / ``N+(>2)`` by patient id (a patient's slides are averaged first).

    Returns:
        Records with ``feature``, group sizes, medians and quartiles, ``u``, ``p``, ``rank_biserial``,
        ``p_holm``, ``p_bh``, the per-class medians, ``p_kw``, ``p_kw_holm``, ``p_kw_bh``.
    """
    frame = summary.assign(patient_id=summary["patient_id"].astype(str)).groupby("patient_id")[list(FEATURES)].mean()
    status = aln_status.rename(index=str).reindex(frame.index)
    records = []
    for feature in FEATURES:
        column = frame[feature]
        by_class = {label: column[(status == label).to_numpy()].dropna().to_numpy() for label in ("N0", *POSITIVE)}
        positive = np.concatenate([by_class[label] for label in POSITIVE])
        records.append({**_binary(feature, by_class["N0"], positive), **_three_class(by_class)})
    for key in ("p", "p_kw"):
        tested = [i for i, r in enumerate(records) if r[key] is not None]
        if tested:
            p = [records[i][key] for i in tested]
            for i, holm, bh in zip(tested, holm_adjust(p), bh_adjust(p), strict=True):
                records[i][f"{key}_holm"], records[i][f"{key}_bh"] = float(holm), float(bh)
    return records


def attention_by_feature(attention: pd.DataFrame, labels: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attention per feature: per patient (mean over its bags), and the mean over the patients of each class.

    Args:
        attention: a run's ``attention.csv`` (``patient_id``, ``patch_key`` = feature, ``attention``).
        labels: ALN status (or any class name) by patient id; patients without one are left out.

    Returns:
        ``per_patient`` (index patient id, one column per feature) and ``by_class`` (one row per feature:
        ``feature``, ``all``, then one column per class, N0 / N+(1-2) / N+(>2) first), sorted by ``all``.
    """
    frame = attention.assign(patient_id=attention["patient_id"].astype(str))
    per_patient = frame.groupby(["patient_id", "patch_key"])["attention"].mean().unstack("patch_key")
    classes = labels.rename(index=str).reindex(per_patient.index)
    per_patient = per_patient[classes.notna().to_numpy()]
    classes = classes.dropna()
    table = per_patient.mean().rename("all").to_frame()
    found = set(classes.astype(str))
    for label in [c for c in ("N0", *POSITIVE) if c in found] + sorted(found - {"N0", *POSITIVE}):
        table[label] = per_patient[(classes == label).to_numpy()].mean()
    by_class = table.rename_axis("feature").reset_index().sort_values("all", ascending=False, ignore_index=True)
    return per_patient.rename_axis(columns=None), by_class
