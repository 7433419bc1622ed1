"""Subgroups of the test split: levels from the cohort, metrics per level, a p-value for the AUC difference."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from balnmp_cache.report.binary import evaluate_binary
from balnmp_cache.report.delong import delong_se
from balnmp_cache.report.predictions import load_predictions
from balnmp_cache.report.subgroups import SUBGROUP_KEYS, subgroup_levels, subgroup_records

from .conftest import synthetic_cohort


def test_levels_follow_the_cutoffs_inclusively():
    cohort = pd.DataFrame(
        {"age": [50.0, 50.5, np.nan], "tumour_size_cm": [2.0, 2.1, 1.0], "er": ["Positive", " negative", "unknown"]},
        index=pd.Index(["1", "2", "3"], name="patient_id"),
    )
    levels = subgroup_levels(cohort, age_cutoff=50, t_stage_cutoff_cm=2.0)
    assert set(levels) == {"age", "t_stage", "er"}
    age, names = levels["age"]
    assert names == ("<= 50 y", "> 50 y") and list(age) == ["<= 50 y", "> 50 y", None]
    assert list(levels["t_stage"][0]) == ["T1 (<= 2 cm)", "T2 (> 2 cm)", "T1 (<= 2 cm)"]
    assert list(levels["er"][0].fillna("?")) == ["Positive", "Negative", "?"]


def _setup(make_binary_run):
    run = load_predictions(make_binary_run("image", strength=1.3, seed=2))
    ids = run.table["patient_id"].tolist()
    cohort = synthetic_cohort(ids, run.table["split"].tolist())
    _, thresholds = evaluate_binary([run], rules=["0.5", "youden"])
    return run, cohort, thresholds


def test_subgroup_metrics_and_p_value_match_a_direct_computation(make_binary_run):
    run, cohort, thresholds = _setup(make_binary_run)
    records, warnings = subgroup_records([run], cohort, thresholds=thresholds, age_cutoff=55.0)
    assert warnings == []
    json.dumps(records, allow_nan=False)
    assert {r["variable"] for r in records} == {"age", "t_stage", "er", "pr", "her2"}
    assert len(records) == 5 * 2 * 2  # variables × levels × threshold rules
    assert all(tuple(r) == SUBGROUP_KEYS and r["split"] == "test" for r in records)

    test = run.split_frame("test")
    age = cohort.loc[test["patient_id"], "age"].to_numpy()
    labels, scores = test["label"].to_numpy(), test["p_1"].to_numpy()
    young, old = age <= 55.0, age > 55.0
    (a1, s1), (a2, s2) = delong_se(scores[young], labels[young]), delong_se(scores[old], labels[old])
    z = (a1 - a2) / math.sqrt(s1**2 + s2**2)
    rows = [r for r in records if r["variable"] == "age" and r["threshold_rule"] == "0.5"]
    assert [r["level"] for r in rows] == ["<= 55 y", "> 55 y"]
    assert rows[0]["n"] == int(young.sum()) and rows[1]["n"] == int(old.sum())
    assert rows[0]["auc"] == pytest.approx(a1) and rows[1]["auc"] == pytest.approx(a2)
    assert rows[0]["p_value"] == pytest.approx(2 * norm.sf(abs(z))) and rows[1]["p_value"] == rows[0]["p_value"]
    assert rows[0]["tp"] == int(np.sum((scores[young] >= 0.5) & (labels[young] == 1)))


def test_tiny_and_empty_subgroups_are_defined(make_binary_run):
    run, cohort, thresholds = _setup(make_binary_run)
    test_ids = run.split_frame("test")["patient_id"]
    cohort.loc[test_ids, "her2"] = "Negative"  # no HER2-positive patient in the test split
    first_pos = run.split_frame("test").query("label == 1")["patient_id"].iloc[0]
    cohort.loc[test_ids, "er"] = "Negative"
    cohort.loc[first_pos, "er"] = "Positive"  # one ER-positive patient: one class
    records, _ = subgroup_records([run], cohort, thresholds=thresholds)
    json.dumps(records, allow_nan=False)
    her2_pos = next(r for r in records if r["variable"] == "her2" and r["level"] == "Positive")
    assert her2_pos["n"] == 0 and her2_pos["auc"] is None and her2_pos["acc"] is None and her2_pos["p_value"] is None
    assert any("no patients in this subgroup" in n for n in her2_pos["notes"])
    er_pos = next(r for r in records if r["variable"] == "er" and r["level"] == "Positive")
    assert er_pos["n"] == 1 and er_pos["auc"] is None and er_pos["p_value"] is None
    assert any("subgroup test" in n for n in er_pos["notes"])


def test_patients_missing_from_the_cohort_are_warned_about(make_binary_run):
    run, cohort, thresholds = _setup(make_binary_run)
    missing = run.split_frame("test")["patient_id"].iloc[:3].tolist()
    partial = cohort.drop(index=missing).drop(columns=["her2"])
    records, warnings = subgroup_records([run], partial, thresholds=thresholds)
    assert any("3 test patient(s) are not in the cohort" in w for w in warnings)
    assert any("HER2" in w for w in warnings)
    age_rows = [r for r in records if r["variable"] == "age" and r["threshold_rule"] == "0.5"]
    assert sum(r["n"] for r in age_rows) == len(run.split_frame("test")) - 3
    assert all(any("3 patient(s) without a known Age" in n for n in r["notes"]) for r in age_rows)
