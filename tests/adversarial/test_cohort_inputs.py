"""Issue 8, items 6 and 7: cohort tables, annotations and demo arguments that used to mislead.

An integer label under a task it cannot express, implausible clinical values, blanks with and
without clinical data, a missing clinical column, a semicolon CSV, workbooks that are none,
degenerate polygons and ``demo-data --patients 0``: each is one clear error (or the right result).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from balnmp_cache import runs
from balnmp_cache.cache import read_manifest

from .conftest import EXTRACT_ARGS, run_cli, write_tiny_slide
from .runs_support import one_error, tiny_study, train_args

__all__ = ["tiny_study"]  # fixture used here

STATUS_CODE = {"N0": "0", "N+(1-2)": "1", "N+(>2)": "2"}


def _cohort(study, path: Path, edit) -> Path:
    with study.cohort_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows = edit(rows) or rows
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _labels(rows, coding):
    for row in rows:
        row["label"] = coding(row.pop("ALN status"))


def test_a_three_class_integer_label_trains_task_3_on_its_two_classes_only(tiny_study, tmp_path) -> None:
    cohort = _cohort(tiny_study, tmp_path / "c.csv", lambda rows: _labels(rows, STATUS_CODE.get))
    result = run_cli(*train_args(tiny_study, tmp_path / "run", "--cohort", cohort, "--task", "3"))
    assert result.exit_code == 0, result.stderr
    assert runs.read_run(tmp_path / "run").task_name == "N0 vs N+(1-2)"
    expected = sum(s in ("N0", "N+(1-2)") for s in tiny_study.status)
    assert len(runs.read_predictions(tmp_path / "run")) == expected < len(tiny_study.status)


def test_a_binary_integer_label_is_refused_for_task_3(tiny_study, tmp_path) -> None:
    cohort = _cohort(tiny_study, tmp_path / "c.csv", lambda rows: _labels(rows, lambda s: str(int(s != "N0"))))
    result = run_cli(*train_args(tiny_study, tmp_path / "run", "--cohort", cohort, "--task", "3"))
    one_error(result, f"{cohort}: column 'label' holds only 0 and 1, which cannot tell N+(1-2) from N+(>2)",
              "task 3 (N0 vs N+(1-2))", "add an 'ALN status' column")
    assert not (tmp_path / "run").exists()


def test_implausible_clinical_values_are_one_error_listing_the_rows(tiny_study, tmp_path) -> None:
    def edit(rows):
        rows[0]["age"], rows[1]["tumour_size_cm"], rows[2]["tumour_size_cm"], rows[3]["er"] = "-40", "0", "45", "maybe"

    cohort = _cohort(tiny_study, tmp_path / "c.csv", edit)
    result = run_cli(*train_args(tiny_study, tmp_path / "run", "--cohort", cohort))
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    (line,) = result.error_lines
    assert line == f"error: {cohort}: 4 problem(s) in the cohort table:"
    for listed in ("row 2 (patient 1): age -40 is implausible; expected 0 to 120 years",
                   "row 3 (patient 2): tumour_size_cm 0 is implausible; expected more than 0 and at most 30 cm",
                   "row 4 (patient 3): tumour_size_cm 45 is implausible",
                   "row 5 (patient 4): ER value 'maybe' is not Positive/Negative"):
        assert any(line.startswith(f"  {listed}") for line in result.stderr.splitlines()), listed


def test_blank_clinical_values_matter_only_with_clinical_data(tiny_study, tmp_path) -> None:
    def edit(rows):
        rows[4]["age"], rows[5]["her2"] = "", ""

    cohort = _cohort(tiny_study, tmp_path / "c.csv", edit)
    plain = run_cli(*train_args(tiny_study, tmp_path / "run", "--cohort", cohort))  # --no-clinical
    assert plain.exit_code == 0, plain.stderr
    fused = run_cli(*train_args(tiny_study, tmp_path / "fused", "--cohort", cohort, "--clinical"))
    assert fused.exit_code == 2 and "Traceback" not in fused.stderr
    (line,) = fused.error_lines
    assert line.startswith(f"error: clinical data incomplete in {cohort}: 2 problem(s)") and "--no-clinical" in line
    assert "  row 6 (patient 5): age is blank" in fused.stderr.splitlines()
    assert not (tmp_path / "fused").exists()


def test_a_missing_clinical_column_is_named_as_the_table_spells_it_with_the_file(tiny_study, tmp_path) -> None:
    cohort = _cohort(tiny_study, tmp_path / "c.csv", lambda rows: [r.pop("tumour_size_cm") for r in rows] and None)
    result = run_cli(*train_args(tiny_study, tmp_path / "run", "--cohort", cohort, "--clinical"))
    one_error(result, f"{cohort} has no column 'Tumour Size(cm)' (or tumour_size_cm), needed for clinical data",
              "--no-clinical")


def test_a_semicolon_csv_says_so(tiny_study, tmp_path) -> None:
    cohort = tmp_path / "c.csv"
    cohort.write_text(tiny_study.cohort_csv.read_text().replace(",", ";"))
    one_error(run_cli(*train_args(tiny_study, tmp_path / "run", "--cohort", cohort)),
              f"{cohort} looks semicolon-separated", "save it comma-separated")


@pytest.mark.parametrize(("content", "what"), [(b"", "0 bytes"), (b"Patient ID,ALN status\n1,N0\n", "text")])
def test_a_workbook_that_is_none_says_so(tiny_study, tmp_path, content: bytes, what: str) -> None:
    cohort = tmp_path / "patients.xlsx"
    cohort.write_bytes(content)
    one_error(run_cli(*train_args(tiny_study, tmp_path / "run", "--cohort", cohort)),
              f"{cohort} is not an Excel workbook ({what}): export it again as .xlsx, or pass the table as a CSV")


def test_degenerate_annotations_are_named_not_called_outside_the_image(tmp_path: Path) -> None:
    slides = tmp_path / "slides"
    for name, offset in (("two", 0), ("none", 128)):
        write_tiny_slide(slides / f"{name}.jpg", offset=offset, seed=3)
    (slides / "two.json").write_text(json.dumps({"positive": [{"name": "line", "vertices": [[0, 0], [100, 100]]}]}))
    (slides / "none.json").write_text(json.dumps({"positive": [], "negative": []}))
    result = run_cli("extract", slides, "--out", tmp_path / "cache", *EXTRACT_ARGS)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    (cache_dir,) = [d for d in (tmp_path / "cache").iterdir() if d.is_dir()]
    reasons = {r.slide_id: r.reason for r in read_manifest(cache_dir)}
    assert reasons["two"] == "no usable tumour region: a polygon needs at least 3 vertices: region 0 ('line') has 2"
    assert reasons["none"].startswith("the annotation has no polygon")
    assert "outside" not in reasons["two"] + reasons["none"]


@pytest.mark.parametrize("patients", ["0", "-5"])
def test_demo_data_with_no_patients_is_an_error(tmp_path: Path, patients: str) -> None:
    out = tmp_path / "demo"
    one_error(run_cli("demo-data", out, "--patients", patients), f"--patients {patients} is invalid",
              "at least 3 patients")
    assert not out.exists()
