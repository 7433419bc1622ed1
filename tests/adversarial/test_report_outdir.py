"""Issue 8, items 2 and 6: a report folder holds exactly one report, and never loses a user's files.

A re-run into the same ``--out`` with fewer runs and no cohort leaves exactly the files of the new
report (no subgroup, Table 1 or confusion file of the earlier one); a folder with other content is
refused whole; a second report into a folder being written is refused as busy.
"""

from __future__ import annotations

import os
from pathlib import Path

from balnmp_cache.outdir import staged_dir

from .conftest import digests, run_cli
from .runs_support import copy_run, finished_runs, leftovers, one_error, tiny_study

__all__ = ["finished_runs", "tiny_study"]  # fixtures used here

SVG = ("--figure-formats", "svg")


def test_a_re_run_with_fewer_runs_keeps_no_file_of_the_earlier_report(tiny_study, finished_runs, tmp_path) -> None:
    first, second = finished_runs(0), copy_run(finished_runs(1), tmp_path / "second")
    out = tmp_path / "report"
    full = run_cli("report", first, second, "--out", out, "--clinical", tiny_study.cohort_csv, *SVG)
    assert full.exit_code == 0, full.stderr
    earlier = set(digests(out))
    assert {"subgroups.csv", "table1.csv", "confusion_second.svg"} <= earlier
    again = run_cli("report", first, "--out", out, *SVG)
    assert again.exit_code == 0, again.stderr
    alone = tmp_path / "alone"
    assert run_cli("report", first, "--out", alone, *SVG).exit_code == 0
    assert set(digests(out)) == set(digests(alone))  # exactly the files of a report of this run alone
    assert not {"subgroups.csv", "subgroups.json", "table1.csv", "confusion_second.svg"} & set(digests(out))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".report")) == [".report.lock"]


def test_a_folder_with_other_files_is_refused_and_left_alone(finished_runs, tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "metrics.csv").write_text("an older report's table")
    before = digests(out)
    result = run_cli("report", finished_runs(0), "--out", out, *SVG)
    one_error(result, f"--out {out} is not a report folder: it holds notes.txt, which report did not write",
              "choose a new or empty --out")
    assert digests(out) == before and leftovers(tmp_path) == []


def test_a_second_report_into_a_folder_being_written_is_busy(finished_runs, tmp_path: Path) -> None:
    out = tmp_path / "report"
    with staged_dir(out, writer="report"):  # this process is writing it
        result = run_cli("report", finished_runs(0), "--out", out, *SVG)
    one_error(result, f"busy: another report is writing {out} (pid {os.getpid()})")
    assert not out.exists() and leftovers(tmp_path) == []
