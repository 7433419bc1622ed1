"""Claiming slides against other processes, restoring lost manifest rows, and a light package import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from balnmp_cache.cache import CacheDir, read_manifest
from balnmp_cache.extract import run_extract
from tests.extract.conftest import config

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "h5py", "zarr", "pandas", "matplotlib", "cucim", "openslide")


def test_a_slide_another_process_holds_is_left_to_it(small_cohort, tmp_path):
    first = run_extract(config([small_cohort], tmp_path / "cache"))
    stamp = (first.cache_dir / "2.h5").stat().st_mtime_ns
    held = CacheDir.open(first.cache_dir).lock("2")  # as another extract process would hold it
    try:
        again = run_extract(config([small_cohort], tmp_path / "cache", force=True))
    finally:
        held.release()
    assert (again.n_ok, again.n_busy, again.n_skipped, again.exit_code) == (1, 1, 0, 0)
    assert [r.slide_id for r in again.rows] == ["1"]
    assert (first.cache_dir / "2.h5").stat().st_mtime_ns == stamp


def test_a_complete_file_whose_manifest_row_was_lost_gets_it_back(small_cohort, tmp_path):
    first = run_extract(config([small_cohort], tmp_path / "cache"))
    manifest = first.cache_dir / "manifest.csv"
    lines = manifest.read_text().splitlines(keepends=True)
    manifest.write_text("".join(line for line in lines if not line.startswith("2,")))  # a crash before the row
    assert [r.slide_id for r in read_manifest(first.cache_dir)] == ["1"]
    again = run_extract(config([small_cohort], tmp_path / "cache"))
    assert (again.n_ok, again.n_skipped) == (0, 2)
    rows = {r.slide_id: r for r in read_manifest(first.cache_dir)}
    assert rows["2"].status == "ok" and rows["2"].patient_id == "2" and rows["2"].n_patches > 0
    assert rows["2"].source == str(small_cohort / "WSIs" / "2.jpg")


@pytest.mark.parametrize("module", ["balnmp_cache.extract.config", "balnmp_cache.extract", "balnmp_cache.cache"])
def test_importing_the_configuration_and_the_cache_stays_light(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == []
