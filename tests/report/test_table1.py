"""Table 1: training (T + V) vs test cohort, mean ± SD with Mann-Whitney U, counts (%) with chi-square."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, mannwhitneyu

from balnmp_cache.report.table1 import TABLE1_KEYS, cohort_groups, table1, table1_by_aln

from .conftest import synthetic_cohort


def _cohort() -> pd.DataFrame:
    ids = [str(i) for i in range(1, 81)]
    splits = ["train"] * 40 + ["val"] * 20 + ["test"] * 20
    return synthetic_cohort(ids, splits, seed=7)


def _row(rows, characteristic, level):
    return next(r for r in rows if r["characteristic"].startswith(characteristic) and r["level"] == level)


def test_table1_statistics_match_scipy():
    cohort = _cohort()
    rows, warnings = table1(cohort, extra_columns=["Tumour Type", "Not a column"])
    assert warnings == []
    assert all(tuple(r) == TABLE1_KEYS for r in rows)
    training, test = cohort[cohort["split"] != "test"], cohort[cohort["split"] == "test"]
    assert _row(rows, "Patients", "n")["training"] == "60" and _row(rows, "Patients", "n")["test"] == "20"

    age = _row(rows, "Age", "mean ± SD")
    assert age["p_value"] == pytest.approx(mannwhitneyu(training["age"], test["age"], alternative="two-sided").pvalue)
    assert age["training"] == f"{training['age'].mean():.2f} ± {training['age'].std(ddof=1):.2f}"
    assert age["test_name"] == "Mann-Whitney U"

    er_header = _row(rows, "ER", "")
    table = pd.crosstab(cohort["er"], cohort["split"] == "test").to_numpy()
    assert er_header["p_value"] == pytest.approx(chi2_contingency(table, correction=False).pvalue)
    positives = int((training["er"] == "Positive").sum())
    assert _row(rows, "ER", "Positive")["training"] == f"{positives} ({100 * positives / 60:.1f}%)"

    stage = _row(rows, "T stage", "")
    t1 = np.where(cohort["tumour_size_cm"] <= 2.0, "T1", "T2")
    expected = chi2_contingency(pd.crosstab(t1, cohort["split"] == "test").to_numpy(), correction=False).pvalue
    assert stage["p_value"] == pytest.approx(expected)
    assert [r["level"] for r in rows if r["characteristic"] == "ALN status"] == ["", "N0", "N+(1-2)", "N+(>2)"]
    assert any(r["characteristic"] == "Tumour Type" for r in rows)
    assert not any(r["characteristic"] == "Not a column" for r in rows)


def test_missing_values_and_patients_without_a_split():
    cohort = _cohort()
    cohort.loc["3", "age"] = np.nan
    cohort.loc["4", "er"] = None
    cohort.loc["5", "split"] = None
    rows, warnings = table1(cohort)
    assert any("1 patient(s) belong to no split" in w for w in warnings)
    assert _row(rows, "Patients", "n")["all"] == "79"
    assert _row(rows, "Age", "missing")["training"] == "1"
    assert _row(rows, "ER", "missing")["training"] == "1"


def test_split_falls_back_to_the_predictions():
    cohort = _cohort().drop(columns=["split"])
    fallback = pd.Series(["train", "test"], index=["1", "2"])
    groups = cohort_groups(cohort, fallback=fallback)
    assert groups["1"] == "training" and groups["2"] == "test" and pd.isna(groups["3"])


def test_a_single_cohort_gives_no_tests_but_no_crash():
    cohort = _cohort()
    cohort["split"] = "train"
    rows, warnings = table1(cohort)
    assert _row(rows, "Age", "mean ± SD")["p_value"] is None
    assert _row(rows, "ER", "")["p_value"] is None and "no test" in _row(rows, "ER", "")["note"]
    assert any("lacks a training or a test group" in w for w in warnings)


def test_table1_by_aln_status_compares_n0_with_node_positive_patients():
    cohort = _cohort()
    cohort.loc[cohort.index[:3], "aln_status"] = None
    rows, warnings = table1_by_aln(cohort)
    assert warnings == ["Table 1 by ALN status: 3 patient(s) without an ALN status are left out"]
    known = cohort[cohort["aln_status"].notna()]
    n0, positive = known[known["aln_status"] == "N0"], known[known["aln_status"] != "N0"]
    patients = _row(rows, "Patients", "n")
    assert patients["N0"] == str(len(n0)) and patients["N(+)"] == str(len(positive))
    age = _row(rows, "Age", "mean ± SD")
    assert age["p_value"] == pytest.approx(mannwhitneyu(n0["age"], positive["age"], alternative="two-sided").pvalue)
    er = pd.crosstab(known["er"], known["aln_status"] == "N0").to_numpy()
    assert _row(rows, "ER", "")["p_value"] == pytest.approx(chi2_contingency(er, correction=False).pvalue)
    assert not any(r["characteristic"] == "ALN status" for r in rows)  # the stratifier is not a row
    assert table1_by_aln(cohort.drop(columns="aln_status"))[0] == []
