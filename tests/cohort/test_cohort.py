from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from balnmp_cache.cohort import (
    BCNB_COLUMNS,
    TASKS,
    fit_clinical,
    get_task,
    load_cohort,
    load_official_bags,
    resolve_splits,
)
from balnmp_cache.errors import CohortError, ConfigError

STATUSES = ["N0", "N+(1-2)", "N+(>2)", "N0", "N0", "N+(1-2)", "N0", "N+(>2)", "N0", "N0"]


def bcnb_frame(n: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "Patient ID": list(range(1, n + 1)),
            "Age(years)": rng.integers(30, 80, n),
            "Tumour Size(cm)": np.round(rng.uniform(0.5, 5.0, n), 1),
            "Tumour Type": ["Invasive ductal carcinoma"] * n,
            "ER": ["Positive", "Negative"] * (n // 2),
            "PR": ["Negative", "Positive"] * (n // 2),
            "HER2": ["Negative"] * n,
            "HER2 Expression": ["1+"] * n,
            "Histological grading": [2] * n,
            "Surgical": ["Mastectomy"] * n,
            "Ki67": [0.2] * n,
            "Molecular subtype": ["Luminal A"] * n,
            "Number of lymph node metastases": [0] * n,
            "ALN status": STATUSES[:n],
        },
        columns=list(BCNB_COLUMNS),
    )


def write_bcnb(root: Path, df: pd.DataFrame, splits: dict[str, list[int]] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    df.to_excel(root / "patient-clinical-data.xlsx", index=False)
    splits = splits or {"train": [1, 2, 3, 4, 5, 6], "val": [7, 8], "test": [9, 10]}
    (root / "dataset-splitting").mkdir(exist_ok=True)
    for name, ids in splits.items():
        (root / "dataset-splitting" / f"{name}_id.txt").write_text("\n".join(map(str, ids)) + "\n")
    return root


def test_bcnb_root_loads_with_splits_and_normalised_columns(tmp_path):
    cohort = load_cohort(write_bcnb(tmp_path / "bcnb", bcnb_frame()))
    table = cohort.table
    assert list(table.index[:3]) == ["1", "2", "3"]
    assert {"aln_status", "age", "tumour_size_cm", "er", "pr", "her2", "split"} <= set(table.columns)
    assert table.loc["7", "split"] == "val" and table.loc["1", "split"] == "train"
    assert table.loc["2", "er"] == "Negative"
    assert cohort.row_of("3") == 4  # header is row 1


@pytest.mark.parametrize(
    ("task", "expected"),
    [(0, {"1": 0, "2": 1, "3": 1}), (1, {"2": 0, "3": 1}), (2, {"1": 0, "2": 1, "3": 2}), (3, {"1": 0, "2": 1}),
     (4, {"1": 0, "3": 1})],
)
def test_task_labels_follow_official_numbering(tmp_path, task, expected):
    cohort = load_cohort(write_bcnb(tmp_path / "bcnb", bcnb_frame()))
    labels = cohort.labels(get_task(task))
    for pid, label in expected.items():
        assert labels[pid] == label
    excluded = {"1": [1], "3": [4], "2": [0, 2, 3, 4]}
    for pid, tasks in excluded.items():
        if task in tasks and pid not in expected:
            assert pid not in labels.index


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"valid tasks .* 0 \(N0 vs N\(\+\)\)"):
        get_task(7)


def test_bad_rows_are_all_listed_in_one_error(tmp_path):
    df = bcnb_frame().astype(object)
    df.loc[1, "Age(years)"] = None  # row 3
    df.loc[3, "Age(years)"] = "fifty"  # row 5
    df.loc[4, "ER"] = "Equivocal"  # row 6
    df.loc[6, "Patient ID"] = 1  # duplicate of row 2, at row 8
    csv = tmp_path / "cohort.csv"
    df.to_csv(csv, index=False)
    with pytest.raises(CohortError) as info:
        load_cohort(csv)
    message = str(info.value)
    assert "age is blank" not in message  # a blank matters only where clinical data is used (fit_clinical)
    assert "row 5 (patient 4): age is non-numeric 'fifty'" in message
    assert "row 6 (patient 5): ER value 'Equivocal'" in message
    assert "rows 2, 8: duplicate patient id '1'" in message
    assert str(csv) in message


def test_csv_with_own_column_names_and_split(tmp_path):
    csv = tmp_path / "c.csv"
    pd.DataFrame(
        {"patient_id": ["a", "b", "c"], "aln_status": ["N0", "N+(1-2)", "N+(>2)"], "age": [40, 50, 60],
         "tumour_size_cm": [1, 2, 3], "er": ["pos", "neg", "Positive"], "pr": ["+", "-", "+"],
         "her2": ["Negative", "Negative", "Positive"], "split": ["train", "val", "test"]}
    ).to_csv(csv, index=False)
    table = load_cohort(csv).table
    assert table.loc["b", "er"] == "Negative" and table.loc["a", "pr"] == "Positive"
    assert table.loc["c", "split"] == "test"


def test_patient_in_two_split_files_is_an_error(tmp_path):
    root = write_bcnb(tmp_path / "bcnb", bcnb_frame(), {"train": [1, 2, 3, 4, 5, 6, 7], "val": [7, 8], "test": [9, 10]})
    with pytest.raises(CohortError, match=r"patient 7 is in both train_id\.txt and val_id\.txt"):
        load_cohort(root)


def test_clinical_encoding_matches_the_official_preprocessing(tmp_path):
    cohort = load_cohort(write_bcnb(tmp_path / "bcnb", bcnb_frame()))
    table = cohort.table
    train = [p for p in table.index if table.at[p, "split"] == "train"]
    enc = fit_clinical(table, train)
    assert enc.names == ("age", "tumour_size_cm", "is_er_negative", "is_pr_negative", "is_her2_negative")
    x_train = enc.transform(table, train)
    assert x_train.dtype == np.float32 and x_train.shape == (len(train), 5)
    # z-scored on the training split with the population standard deviation (ddof = 0)
    np.testing.assert_allclose(x_train[:, :2].mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(x_train[:, :2].std(axis=0, ddof=0), 1.0, atol=1e-6)
    ages = table.loc[train, "age"].to_numpy(float)
    expected_age = (float(table.at["9", "age"]) - ages.mean()) / ages.std(ddof=0)
    assert enc.transform(table, ["9"])[0, 0] == pytest.approx(expected_age, rel=1e-6)
    # "is negative" flags
    assert list(enc.transform(table, ["1"])[0, 2:]) == [0.0, 1.0, 1.0]
    assert list(enc.transform(table, ["2"])[0, 2:]) == [1.0, 0.0, 1.0]


def test_extra_columns_numeric_standardised_categorical_one_hot(tmp_path):
    cohort = load_cohort(write_bcnb(tmp_path / "bcnb", bcnb_frame()))
    table = cohort.table
    table["Ki67"] = table["Ki67"].astype(float) + np.arange(len(table)) / 100
    table.loc["1", "Molecular subtype"] = "Triple negative"
    enc = fit_clinical(table, list(table.index), extra_columns=["Ki67", "Molecular subtype"])
    assert enc.names[5:] == ("Ki67 (z)", "Molecular subtype=Luminal A", "Molecular subtype=Triple negative")
    x = enc.transform(table, ["1", "2"])
    assert list(x[:, 6]) == [0.0, 1.0] and list(x[:, 7]) == [1.0, 0.0]


def test_missing_clinical_columns_say_how_to_proceed(tmp_path):
    csv = tmp_path / "c.csv"
    pd.DataFrame({"patient_id": ["a", "b"], "aln_status": ["N0", "N0"]}).to_csv(csv, index=False)
    table = load_cohort(csv).table
    with pytest.raises(CohortError, match="--no-clinical"):
        fit_clinical(table, ["a"])


def test_kfold_is_stratified_persisted_and_reused(tmp_path):
    csv = tmp_path / "c.csv"
    n = 40
    frame = pd.DataFrame({"patient_id": [f"p{i}" for i in range(n)], "aln_status": ["N0", "N+(1-2)"] * (n // 2)})
    frame.to_csv(csv, index=False)
    cohort = load_cohort(csv)
    labels = cohort.labels(TASKS[0])
    splits_file = tmp_path / "splits.csv"
    first = resolve_splits(cohort.table, labels, scheme="kfold", k=5, fold=0, seed=1, splits_file=splits_file)
    assert splits_file.is_file()
    counts = pd.Series(first).value_counts()
    assert counts["test"] == 8 and counts["val"] == 8 and counts["train"] == 24
    test_labels = labels[[p for p, s in first.items() if s == "test"]]
    assert test_labels.sum() == 4  # stratified: half positive
    # reused even with another seed: the file is the truth
    again = resolve_splits(cohort.table, labels, scheme="kfold", k=5, fold=0, seed=99, splits_file=splits_file)
    assert again == first
    other_fold = resolve_splits(cohort.table, labels, scheme="kfold", k=5, fold=1, seed=1, splits_file=splits_file)
    assert {p for p, s in other_fold.items() if s == "val"} != {p for p, s in first.items() if s == "val"}


def test_official_json_gives_splits_labels_and_bags(tmp_path):
    for split, entries in {
        "train": [{"id": "1", "label": "0", "patch_paths": [f"patches/1/1_0_{i * 256}_0.jpg" for i in range(10)]}] * 2,
        "val": [{"id": "2", "label": "1", "patch_paths": ["patches/2/2_0_0_0.jpg"] * 10}],
        "test": [{"id": "3", "label": 1, "patch_paths": ["patches/3/3_0_0_0.jpg"] * 10}],
    }.items():
        (tmp_path / f"{split}-type-0.json").write_text(json.dumps(entries))
    bags = load_official_bags(tmp_path, 0)
    assert bags.split == {"1": "train", "2": "val", "3": "test"}
    assert bags.labels == {"1": 0, "2": 1, "3": 1}
    assert len(bags.bags["1"]) == 2 and len(bags.bags["1"][0]) == 10


def test_official_json_patient_in_two_splits_is_an_error(tmp_path):
    for split, pid in [("train", "1"), ("val", "1"), ("test", "2")]:
        (tmp_path / f"{split}-type-3.json").write_text(json.dumps([{"id": pid, "label": "0", "patch_paths": []}]))
    with pytest.raises(CohortError, match=r"patient 1 is in both train-type-3\.json and val-type-3\.json"):
        load_official_bags(tmp_path, 3)


def test_a_table_without_outcome_is_accepted_for_prediction_only(tmp_path):
    csv = tmp_path / "new.csv"
    pd.DataFrame({"patient_id": ["x"], "age": [50], "tumour_size_cm": [2.0], "er": ["Positive"], "pr": ["Negative"],
                  "her2": ["Negative"]}).to_csv(csv, index=False)
    with pytest.raises(CohortError, match="no outcome"):
        load_cohort(csv)
    assert load_cohort(csv, require_outcome=False).table.loc["x", "pr"] == "Negative"
