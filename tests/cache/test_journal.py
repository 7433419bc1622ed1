"""The manifest journal: O(1) appends, compaction, torn records after kill -9, concurrent writers and readers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from balnmp_cache.cache import ManifestRow, read_manifest, update_manifest
from balnmp_cache.cache.journal import append_records, journal_path, parse_records
from balnmp_cache.cache.manifest import append_rows

from .test_locks import child

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX locks and signals")


def _row(sid: str, status: str = "ok", n: int = 1) -> ManifestRow:
    return ManifestRow(slide_id=sid, status=status, n_patches=n if status == "ok" else 0)  # type: ignore[arg-type]


def test_appends_leave_manifest_csv_alone_until_compacted(tmp_path: Path) -> None:
    update_manifest(tmp_path, [_row("a")])
    csv = tmp_path / "manifest.csv"
    before = (csv.stat().st_ino, csv.read_bytes())
    for sid in ("b", "c", "a"):
        append_rows(tmp_path, [_row(sid, "failed" if sid == "a" else "ok")])
    assert (csv.stat().st_ino, csv.read_bytes()) == before  # O(1): no rewrite per slide
    assert [(r.slide_id, r.status) for r in read_manifest(tmp_path)] == [("a", "failed"), ("b", "ok"), ("c", "ok")]
    update_manifest(tmp_path, [])
    assert not journal_path(tmp_path).exists()
    assert csv.read_text().splitlines()[1:] == ["a,,,failed,,0,0.000", "b,,,ok,,1,0.000", "c,,,ok,,1,0.000"]


def test_a_torn_last_record_is_ignored_by_readers_and_cut_by_the_next_append(tmp_path: Path) -> None:
    append_rows(tmp_path, [_row("a")])
    with journal_path(tmp_path).open("ab") as handle:  # what a writer killed in the middle of its write leaves
        handle.write(b'{"row":{"slide_id":"b","status":"ok","n_pat')
    assert [r.slide_id for r in read_manifest(tmp_path)] == ["a"]
    append_rows(tmp_path, [_row("c")])
    assert [r.slide_id for r in read_manifest(tmp_path)] == ["a", "c"]
    assert [list(r) for r in parse_records(journal_path(tmp_path).read_bytes())] == [["id", "row"], ["id", "row"]]


def test_kill_9_during_appends_loses_at_most_the_record_being_written(tmp_path: Path) -> None:
    code = f"""
        from balnmp_cache.cache import ManifestRow
        from balnmp_cache.cache.manifest import append_rows
        for i in range(100000):
            append_rows({str(tmp_path)!r}, [ManifestRow(slide_id=f"s{{i:06d}}", status="ok", n_patches=i)])
            if i == 50:
                print("READY", flush=True)
    """
    with child(textwrap.dedent(code)) as proc:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    rows = read_manifest(tmp_path)
    assert len(rows) > 50 and [r.n_patches for r in rows] == list(range(len(rows)))  # a prefix, nothing else
    append_rows(tmp_path, [_row("z")])  # the next writer carries on from a clean line
    assert [r.slide_id for r in read_manifest(tmp_path)][-1] == "z" and len(read_manifest(tmp_path)) == len(rows) + 1
    update_manifest(tmp_path, [])
    assert len(read_manifest(tmp_path)) == len(rows) + 1


def _appender(cache_dir: str, prefix: str, count: int, compact_every: int) -> None:
    for i in range(count):
        append_rows(Path(cache_dir), [ManifestRow(slide_id=f"{prefix}{i:03d}", status="ok", n_patches=i)])
        if compact_every and i % compact_every == compact_every - 1:
            update_manifest(Path(cache_dir), [])


def test_concurrent_appenders_and_compactions_never_lose_rows_and_readers_never_see_rows_vanish(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_appender, args=(str(tmp_path), p, 60, k)) for p, k in (("a", 7), ("b", 0))]
    for proc in procs:
        proc.start()
    seen: set[str] = set()
    while any(proc.is_alive() for proc in procs):
        now = {row.slide_id for row in read_manifest(tmp_path)}
        assert seen <= now, f"rows vanished from a reader's view: {sorted(seen - now)[:5]}"
        seen = now
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    update_manifest(tmp_path, [])
    assert [r.slide_id for r in read_manifest(tmp_path)] == sorted(f"{p}{i:03d}" for p in "ab" for i in range(60))


def test_records_that_are_not_rows_are_kept_apart(tmp_path: Path) -> None:
    append_records(tmp_path, [{"file": {"slide_id": "a"}}, {"row": {"slide_id": "b", "status": "bogus"}}])
    assert read_manifest(tmp_path) == []  # an index entry and an invalid row are not manifest rows
