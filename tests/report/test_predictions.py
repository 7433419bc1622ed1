"""Reading predictions.csv and run.json: every bad input is a ReportInputError naming the file and the rows."""

from __future__ import annotations

import json

import numpy as np
import pytest

from balnmp_cache.errors import ReportInputError
from balnmp_cache.report.predictions import check_same_patients, comparable, load_predictions, load_runs

from .conftest import run_json, synthetic_labels, write_predictions

HEADER = "patient_id,split,label,n_bags,p_0,p_1\n"
GOOD_ROWS = ["1,train,0,3,0.8,0.2", "2,train,1,2,0.3,0.7", "3,val,0,1,0.6,0.4", "4,test,1,5,0.1,0.9"]


def _write(tmp_path, rows, header=HEADER, name="run"):
    directory = tmp_path / name
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "predictions.csv"
    path.write_text(header + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _error(path, named=None) -> str:
    with pytest.raises(ReportInputError) as info:
        load_predictions(path)
    message = str(info.value)
    assert str(named or path) in message
    return message


def test_a_valid_file_is_read_with_string_ids_and_sorted_splits(tmp_path):
    run = load_predictions(_write(tmp_path, GOOD_ROWS).parent)
    assert run.name == "run" and run.n_classes == 2 and run.is_binary
    assert run.splits == ["train", "val", "test"]
    assert list(run.split_frame("train")["patient_id"]) == ["1", "2"]
    np.testing.assert_allclose(run.scores("train"), [0.2, 0.7])
    assert run.classes == ("0", "1") and run.info.task is None


def test_missing_columns_are_named(tmp_path):
    path = _write(tmp_path, ["1,train,0,0.8,0.2"], header="patient_id,split,label,p_0,p_1\n")
    assert "n_bags" in _error(path)
    path = _write(tmp_path, ["1,train,0,3,0.8"], header="patient_id,split,label,n_bags,p_0\n", name="b")
    assert "p_1" in _error(path)
    path = _write(tmp_path, ["1,train,0,3,0.8,0.2"], header="patient_id,split,label,n_bags,p_0,p_2\n", name="c")
    assert "p_1" in _error(path)


def test_probabilities_outside_unit_interval_name_the_rows(tmp_path):
    rows = [*GOOD_ROWS, "5,test,0,1,1.3,-0.3", "6,test,1,1,abc,0.5"]
    message = _error(_write(tmp_path, rows))
    assert "outside [0, 1]" in message and "rows 5 (patient 5" in message and "6 (patient 6" in message


def test_probabilities_not_summing_to_one_name_the_rows(tmp_path):
    message = _error(_write(tmp_path, [*GOOD_ROWS, "7,val,1,1,0.5,0.4"]))
    assert "do not sum to 1" in message and "row 5 (patient 7" in message


def test_a_patient_twice_in_one_split(tmp_path):
    message = _error(_write(tmp_path, [*GOOD_ROWS, "2,train,1,2,0.3,0.7"]))
    assert "more than once" in message and "rows 2 (patient 2" in message and "5 (patient 2" in message


def test_the_same_patient_in_two_splits_is_allowed(tmp_path):
    run = load_predictions(_write(tmp_path, [*GOOD_ROWS, "1,test,0,3,0.8,0.2"]))
    assert len(run.table) == 5


def test_bad_split_and_label_and_n_bags(tmp_path):
    assert "invalid split" in _error(_write(tmp_path, [*GOOD_ROWS, "9,holdout,0,1,0.5,0.5"]))
    message = _error(_write(tmp_path, [*GOOD_ROWS, "9,test,2,1,0.5,0.5"], name="b"))
    assert "invalid label" in message and "row 5" in message and "0..1" in message
    assert "n_bags" in _error(_write(tmp_path, [*GOOD_ROWS, "9,test,1,-2,0.5,0.5"], name="c"))


def test_empty_and_missing_inputs(tmp_path):
    empty = tmp_path / "e" / "predictions.csv"
    empty.parent.mkdir()
    empty.write_text("")
    assert "empty" in _error(empty)
    assert "no rows" in _error(_write(tmp_path, [], name="h"))
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(ReportInputError, match=r"has no predictions\.csv"):
        load_predictions(bare)
    with pytest.raises(ReportInputError, match="does not exist"):
        load_predictions(tmp_path / "nowhere.csv")


def test_run_json_is_read_and_checked(tmp_path):
    path = _write(tmp_path, GOOD_ROWS)
    info = {"task": 0, "classes": ["N0", "N(+)"], "cache": {"random_weights": True}}
    (path.parent / "run.json").write_text(json.dumps(info))
    run = load_predictions(path)
    assert run.info.task == 0 and run.classes == ("N0", "N(+)") and run.info.random_weights
    (path.parent / "run.json").write_text(json.dumps({"task": 0, "classes": ["N0", "N+(1-2)", "N+(>2)"]}))
    assert "'classes'" in _error(path, named=path.parent / "run.json")
    (path.parent / "run.json").write_text("{not json")
    assert "not valid JSON" in _error(path, named=path.parent / "run.json")


def test_run_names_are_made_unique(tmp_path):
    a = _write(tmp_path / "seed0", GOOD_ROWS, name="image")
    b = _write(tmp_path / "seed1", GOOD_ROWS, name="image")
    names = [r.name for r in load_runs([a, b])]
    assert names == ["seed0/image", "seed1/image"]


def test_runs_on_different_patients_name_both_files_and_the_ids(tmp_path):
    a = load_predictions(_write(tmp_path, GOOD_ROWS, name="a"))
    b = load_predictions(_write(tmp_path, [*GOOD_ROWS[:3], "8,test,1,5,0.1,0.9"], name="b"))
    assert comparable(a, b)
    check_same_patients(a, b, "train")
    with pytest.raises(ReportInputError) as info:
        check_same_patients(a, b, "test")
    message = str(info.value)
    assert str(a.path) in message and str(b.path) in message
    assert "only in the first: 4" in message and "only in the second: 8" in message


def test_runs_with_different_labels_for_a_patient(tmp_path):
    a = load_predictions(_write(tmp_path, GOOD_ROWS, name="a"))
    b = load_predictions(_write(tmp_path, ["1,train,1,3,0.8,0.2", *GOOD_ROWS[1:]], name="b"))
    with pytest.raises(ReportInputError, match=r"different labels.*: 1"):
        check_same_patients(a, b, "train")


def test_runs_of_different_tasks_are_not_comparable(tmp_path):
    a = _write(tmp_path, GOOD_ROWS, name="a")
    b = _write(tmp_path, GOOD_ROWS, name="b")
    (a.parent / "run.json").write_text(json.dumps({"task": 0}))
    (b.parent / "run.json").write_text(json.dumps({"task": 3}))
    assert not comparable(load_predictions(a), load_predictions(b))


def test_an_unfinished_training_run_is_refused(tmp_path):
    from balnmp_cache.report.predictions import load_predictions

    run = tmp_path / "run"
    run.mkdir()
    (run / "predictions.csv").write_text(HEADER + "1,test,0,1,0.9,0.1\n2,test,1,1,0.2,0.8\n")
    assert load_predictions(run).name == "run"  # a bare predictions.csv folder is fine
    (run / "checkpoint.pt").write_bytes(b"")  # a trained run's folder ...
    with pytest.raises(ReportInputError, match="unfinished"):  # ... without a complete run.json
        load_predictions(run)
    (run / "run.json").write_text('{"complete": true}')
    assert load_predictions(run).n_classes == 2


def test_differing_patients_are_listed_in_natural_order(tmp_path):
    frame = synthetic_labels(0)
    test_ids = list(frame.loc[frame["split"] == "test", "patient_id"])
    p1 = np.full(len(frame), 0.4)
    a = write_predictions(tmp_path / "a", frame, np.column_stack([1 - p1, p1]), run_json=run_json(0))
    renamed = frame.copy()
    renamed.loc[renamed["patient_id"].isin(test_ids[:3]), "patient_id"] = ["9000", "1000", "900"]
    b = write_predictions(tmp_path / "b", renamed, np.column_stack([1 - p1, p1]), run_json=run_json(0))
    with pytest.raises(ReportInputError) as info:
        check_same_patients(load_predictions(a), load_predictions(b), "test")
    assert "only in the second: 900, 1000, 9000" in str(info.value)


def test_a_folder_of_run_directories_stands_for_its_runs(make_binary_run, tmp_path):
    from balnmp_cache.report.predictions import expand_run_folders

    for name in ("run-10", "run-9", ".run-1.tmp-1-abc"):
        make_binary_run(name)
    (tmp_path / "runs" / "splits.csv").write_text("patient_id,fold\n")
    assert [p.name for p in expand_run_folders([tmp_path / "runs"])] == ["run-9", "run-10"]
    assert [r.name for r in load_runs([tmp_path / "runs"])] == ["run-9", "run-10"]
    assert expand_run_folders([tmp_path / "runs" / "run-9"]) == [tmp_path / "runs" / "run-9"]
