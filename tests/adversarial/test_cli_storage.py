"""Issue 8, item 3: full, read-only and vanished disks in every command are one line, exit 2, nothing lost.

Read-only folders and full disks are small tmpfs mounts (root only; the tests skip elsewhere). Each
case checks the one ``error:`` line (the path and what the errno means), that no staging folder or
temporary is left, that what was complete is byte-identical, and where it is cheap that a re-run
once the cause is gone gives what an uninterrupted run gives.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from balnmp_cache.cache.checksum import CHECKSUMMED, checksum_attr

from .conftest import digests, fill, run_cli, tmpfs
from .runs_support import copy_run, finished_runs, leftovers, one_error, tiny_study, train_args

__all__ = ["finished_runs", "tiny_study"]  # fixtures used here

READ_ONLY = "the filesystem is read-only (EROFS); remount it read-write or write to another folder"
FULL = "no space left on the device (ENOSPC); free space there or write to another folder"


def _command(name: str, study, run: Path, out: Path, tmp_path: Path) -> list[str | Path]:
    if name == "train":
        return list(train_args(study, out / "run"))
    if name == "ablate":
        grid = tmp_path / "grid.toml"
        grid.write_text(f'out = "{out / "ablation"}"\n[base]\ncache = "{study.cache_dir}"\n'
                        f'cohort = "{study.cohort_csv}"\nepochs = 1\nclinical = false\n[grid]\nseed = [0]\n')
        return ["ablate", grid]
    if name == "report":
        return ["report", run, "--out", out / "report"]
    if name == "predict":
        return ["predict", run, study.cache_dir, "--out", out / "predict"]
    return ["demo-data", out / "demo", "--patients", "3"]


@pytest.mark.parametrize("name", ["train", "ablate", "report", "predict", "demo-data"])
def test_a_read_only_output_is_one_line(name, read_only_dir: Path, tiny_study, finished_runs, tmp_path) -> None:
    result = run_cli(*_command(name, tiny_study, finished_runs(0), read_only_dir, tmp_path))
    one_error(result, "cannot write", str(read_only_dir), READ_ONLY)
    assert list(read_only_dir.iterdir()) == []


def test_verify_of_a_vanished_cache_is_one_line(tiny_study, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(tiny_study.cache_dir, cache)
    shutil.rmtree(cache)
    one_error(run_cli("verify", cache), f"cache directory {cache} does not exist")


def test_train_on_a_full_disk_keeps_the_finished_run_and_a_re_run_gives_the_same_run(
    small_tmpfs: Path, tiny_study, finished_runs
) -> None:
    reference = finished_runs(0)
    run = copy_run(finished_runs(1), small_tmpfs / "run")
    before = digests(run)
    filler = fill(small_tmpfs, leave_bytes=300_000)  # enough to start, less than the run's files and the reserve
    result = run_cli(*train_args(tiny_study, run, "--force"))
    one_error(result, f"cannot write {run}: {FULL}")
    assert digests(run) == before and leftovers(small_tmpfs) == []
    assert "training" in result.stderr  # refused by the check before the first file, after the epochs
    filler.unlink()
    again = run_cli(*train_args(tiny_study, run, "--force"))
    assert again.exit_code == 0, again.stderr
    same = ("predictions.csv", "attention.csv", "checkpoint.pt")
    assert {k: digests(run)[k] for k in same} == {k: digests(reference)[k] for k in same}


def _report_files(folder: Path) -> dict[str, str | None]:
    """Digests of a report's tables and records; names only for config.toml (it names --out) and figures."""
    return {k: v if k.endswith((".csv", ".json", ".md")) else None for k, v in digests(folder).items()}


def test_train_on_a_disk_without_room_to_start_is_refused_before_loading(small_tmpfs: Path, tiny_study) -> None:
    fill(small_tmpfs, leave_bytes=100_000)
    result = run_cli(*train_args(tiny_study, small_tmpfs / "run"))
    one_error(result, f"cannot write {small_tmpfs / 'run'}: {FULL}")
    assert "training" not in result.stderr and leftovers(small_tmpfs) == []


def test_report_on_a_full_disk_keeps_the_earlier_report_and_a_re_run_completes(finished_runs, tmp_path) -> None:
    with tmpfs(tmp_path / "tmpfs", "2m") as mount:  # a report of two runs takes about 600 kB
        _report_on_a_full_disk(mount, finished_runs(0), copy_run(finished_runs(1), tmp_path / "second"), tmp_path)


def _report_on_a_full_disk(small_tmpfs: Path, first: Path, second: Path, tmp_path: Path) -> None:
    out, svg = small_tmpfs / "report", ("--figure-formats", "svg")
    assert run_cli("report", first, "--out", out, *svg).exit_code == 0
    before = digests(out)
    filler = fill(small_tmpfs, leave_bytes=20_000)
    result = run_cli("report", first, second, "--out", out, *svg)
    one_error(result, f"cannot write {out}: {FULL}")
    assert digests(out) == before and leftovers(small_tmpfs) == []  # no truncated SVG, no staging folder
    filler.unlink()
    assert run_cli("report", first, second, "--out", out, *svg).exit_code == 0
    reference = tmp_path / "reference"
    assert run_cli("report", first, second, "--out", reference, *svg).exit_code == 0
    assert _report_files(out) == _report_files(reference)


def test_demo_data_on_a_full_disk_is_one_line_without_temporaries(small_tmpfs: Path) -> None:
    fill(small_tmpfs, leave_bytes=200_000)  # a demo slide is about 1 MB
    out = small_tmpfs / "demo"
    result = run_cli("demo-data", out, "--patients", "3", "--no-pyramidal")
    one_error(result, f"cannot write {out}", FULL)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_cache_with_an_inf_feature_is_refused_before_training(tiny_study, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(tiny_study.cache_dir, cache)
    with h5py.File(cache / "3.h5", "r+") as f:  # as an older version wrote it: no checksums to catch it first
        for array in CHECKSUMMED:
            del f.attrs[checksum_attr(array)]
        f["features"][0, 0] = np.inf
    result = run_cli(*train_args(tiny_study, tmp_path / "run", "--cache", cache))
    one_error(result, "slide '3' (3.h5) is unreadable or damaged: 1 NaN/inf feature")
    assert not (tmp_path / "run").exists() and leftovers(tmp_path) == []
