"""Per-feature statistics against scipy and independent restatements; the per-WSI summaries."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from balnmp_cache.nuclei.stats import (
    FEATURES,
    attention_by_feature,
    bh_adjust,
    compare_features,
    holm_adjust,
    rank_biserial,
    slide_summary,
)


def _holm_by_definition(p):
    """Holm: reject H(1..k) while p(i) <= alpha / (m - i + 1); the adjusted p is the smallest such alpha."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


@pytest.mark.parametrize("seed", range(5))
def test_holm_and_bh_match_independent_computations(seed):
    p = np.random.default_rng(seed).uniform(0, 0.2, 8)
    assert holm_adjust(p) == pytest.approx(_holm_by_definition(list(p)))
    assert bh_adjust(p) == pytest.approx(stats.false_discovery_control(p, method="bh"))


def test_the_papers_p_values_survive_bh_but_not_holm():
    # major axis, minor axis, area, orientation, circumference, density, circularity
    paper = [0.083, 0.065, 0.024, 0.012, 0.009, 0.015, 0.010]
    assert (holm_adjust(paper) > 0.05).all()
    assert (bh_adjust(paper)[2:] <= 0.05).all()


def test_rank_biserial_equals_cliffs_delta():
    rng = np.random.default_rng(3)
    negative, positive = rng.normal(0, 1, 17), rng.normal(0.7, 1, 11)
    u = stats.mannwhitneyu(positive, negative).statistic
    cliff = np.mean([np.sign(a - b) for a, b in itertools.product(positive, negative)])
    assert rank_biserial(u, len(negative), len(positive)) == pytest.approx(cliff)


def _summary(rng, n=30):
    status = np.array(["N0"] * 14 + ["N+(1-2)"] * 8 + ["N+(>2)"] * 8)
    frame = pd.DataFrame({"patient_id": [str(i) for i in range(n)], "slide_id": [str(i) for i in range(n)]})
    for k, feature in enumerate(FEATURES):
        frame[feature] = rng.normal(0, 1, n) + (status != "N0") * 0.3 * k
    return frame, pd.Series(status, index=frame["patient_id"])


def test_compare_features_matches_scipy():
    frame, status = _summary(np.random.default_rng(0))
    records = compare_features(frame, status)
    assert [r["feature"] for r in records] == list(FEATURES)
    negative = (status == "N0").to_numpy()
    for r in records:
        values = frame[r["feature"]].to_numpy()
        assert r["p"] == pytest.approx(stats.mannwhitneyu(values[~negative], values[negative]).pvalue)
        groups = [values[(status == c).to_numpy()] for c in ("N0", "N+(1-2)", "N+(>2)")]
        assert r["p_kw"] == pytest.approx(stats.kruskal(*groups).pvalue)
        assert r["median_n0"] == pytest.approx(np.median(values[negative]))
        assert r["q3_npos"] == pytest.approx(np.percentile(values[~negative], 75))
        assert (r["n_n0"], r["n_npos"]) == (14, 16)
    assert [r["p_holm"] for r in records] == pytest.approx(holm_adjust([r["p"] for r in records]))
    assert records[-1]["rank_biserial"] > 0.5  # the planted shift grows with the feature index


def test_a_patients_slides_are_averaged_before_testing():
    frame, status = _summary(np.random.default_rng(1))
    twice = pd.concat([frame, frame.assign(slide_id=frame["slide_id"] + "b")])
    assert compare_features(twice, status)[0]["p"] == pytest.approx(compare_features(frame, status)[0]["p"])


def test_slide_summary_definitions():
    nuclei = pd.DataFrame({"border": [False, False, True], "area_um2": [10.0, 30.0, 1000.0],
                           "major_axis_um": [4.0, 6.0, 50.0], "minor_axis_um": [2.0, 3.0, 1.0],
                           "circumference_um": [1.0, 2.0, 3.0], "circularity": [0.9, 0.7, 0.1],
                           "rectangularity": [0.8, 0.8, 0.8], "eccentricity": [0.5, 0.5, 0.5],
                           "solidity": [1.0, 1.0, 1.0], "perimeter_um": [1.0, 2.0, 3.0],
                           "mean_hematoxylin_od": [0.1, 0.2, 0.3]})  # fmt: skip
    patches = pd.DataFrame({"tissue_um2": [5e4, 5e4], "n_nuclei": [2, 1], "orientation_order": [0.6, np.nan]})
    s = slide_summary(nuclei, patches, physical=True)
    assert s["area"] == 20.0  # the median of the nuclei not cut by the patch edge
    assert s["density"] == pytest.approx(3 / 1e5 * 1e6)  # all nuclei over all tissue, per mm²
    assert s["orientation"] == pytest.approx(0.6)
    assert s["n_nuclei"] == 3 and s["units"] == "um"


def test_attention_by_feature_averages_bags_then_patients():
    attention = pd.DataFrame({
        "patient_id": ["1", "1", "1", "1", "2", "2"], "bag": [0, 0, 1, 1, 0, 0],
        "patch_key": ["area", "density", "area", "density", "area", "density"],
        "attention": [0.2, 0.8, 0.4, 0.6, 0.9, 0.1],
    })  # fmt: skip
    per_patient, table = attention_by_feature(attention, pd.Series({"1": "N0", "2": "N+(>2)"}))
    assert per_patient.loc["1", "area"] == pytest.approx(0.3)
    row = table.set_index("feature")
    assert row.loc["area", "N0"] == pytest.approx(0.3) and row.loc["area", "N+(>2)"] == pytest.approx(0.9)
    assert list(table.columns) == ["feature", "all", "N0", "N+(>2)"]
    assert row.loc["area", "all"] == pytest.approx(0.6)
    assert table["feature"].tolist() == ["area", "density"]  # sorted by mean attention
