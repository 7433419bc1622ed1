"""manifest.csv: merging, ordering, validation and concurrent updates from several processes."""

from __future__ import annotations

import csv
import multiprocessing
from pathlib import Path

import pytest

from balnmp_cache.cache import ManifestRow, read_manifest, update_manifest
from balnmp_cache.errors import CacheError


def test_update_merges_one_row_per_slide_latest_wins_sorted(tmp_path: Path) -> None:
    assert read_manifest(tmp_path) == []
    failed = ManifestRow(slide_id="b", status="failed", reason="cannot open\nslide, really", seconds=1.23456)
    update_manifest(tmp_path, [failed])
    update_manifest(
        tmp_path,
        [
            ManifestRow(slide_id="c", patient_id="P3", source="/d/c.svs", status="ok", n_patches=12, seconds=4.5),
            ManifestRow(slide_id="a", status="empty", reason="no tissue"),
        ],
    )
    update_manifest(tmp_path, [ManifestRow(slide_id="b", patient_id="P2", status="ok", n_patches=3)])
    rows = read_manifest(tmp_path)
    assert [r.slide_id for r in rows] == ["a", "b", "c"]
    assert rows[1] == ManifestRow(slide_id="b", patient_id="P2", status="ok", n_patches=3)
    assert rows[2] == ManifestRow(
        slide_id="c", patient_id="P3", source="/d/c.svs", status="ok", n_patches=12, seconds=4.5
    )
    with open(tmp_path / "manifest.csv", newline="") as handle:
        records = list(csv.reader(handle))
    assert records[0] == ["slide_id", "patient_id", "source", "status", "reason", "n_patches", "seconds"]
    assert len(records) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".manifest")]


def test_reasons_are_kept_on_one_line(tmp_path: Path) -> None:
    update_manifest(tmp_path, [ManifestRow(slide_id="x", status="failed", reason="bad JPEG,\n  premature end")])
    assert read_manifest(tmp_path)[0].reason == "bad JPEG, premature end"
    assert len((tmp_path / "manifest.csv").read_text().splitlines()) == 2


def test_rows_are_validated(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match=r"'skipped'.*ok, failed, empty"):
        ManifestRow(slide_id="a", status="skipped")  # type: ignore[arg-type]
    (tmp_path / "manifest.csv").write_text("slide_id,status\na,ok\n")
    with pytest.raises(CacheError, match="lacks column"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.csv").write_text(
        "slide_id,patient_id,source,status,reason,n_patches,seconds\na,,,ok,,many,0\n"
    )
    with pytest.raises(CacheError, match="line 2"):
        read_manifest(tmp_path)


def _writer(cache_dir: str, prefix: str, count: int) -> None:
    for i in range(count):
        update_manifest(Path(cache_dir), [ManifestRow(slide_id=f"{prefix}{i:03d}", status="ok", n_patches=i)])


def test_concurrent_processes_never_lose_rows(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_writer, args=(str(tmp_path), prefix, 40)) for prefix in ("a", "b")]
    for proc in procs:
        proc.start()
    _writer(str(tmp_path), "c", 40)
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    ids = [row.slide_id for row in read_manifest(tmp_path)]
    assert len(ids) == 120
    assert ids == sorted(f"{p}{i:03d}" for p in "abc" for i in range(40))
