"""The completion index: a finished slide is judged by a stat while its file is as written, and read through
(checksums and all) whenever the file's size, mtime, inode or ctime changed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from balnmp_cache.cache import CacheDir, ManifestRow
from balnmp_cache.cache.index import file_state, read_index

from .conftest import PARAMS, make_slide, provenance

SOURCE = Path("/data/slide.svs")


def _bytes_read() -> int:
    """Bytes this process has read through system calls so far (Linux ``/proc/self/io``)."""
    with open("/proc/self/io") as handle:
        return int(next(line for line in handle if line.startswith("rchar")).split()[1])


needs_proc_io = pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")


def _cache(root: Path, format: str = "hdf5") -> CacheDir:
    return CacheDir.create(root, {**PARAMS, "format": format}, encoder="efficientnet_lite0", mode="avg",
                           format=format, dtype="float16")


def _commit(cache: CacheDir, sid: str, *, n: int = 64, d: int = 256) -> None:
    sf = make_slide(sid, n=n, d=d, **provenance(cache.key, source_fingerprint="fp", source_path=str(SOURCE)))
    cache.commit(sf, ManifestRow(slide_id=sid, status="ok", n_patches=n), source_state="st")


def _fingerprint(calls: list[int]):  # type: ignore[no-untyped-def]
    return lambda: calls.append(1) or "fp"


@needs_proc_io
@pytest.mark.parametrize("format", ["hdf5", "zarr"])
def test_a_committed_slide_is_done_without_reading_its_file_or_its_source(tmp_path: Path, format: str) -> None:
    cache = _cache(tmp_path, format)
    for i in range(20):
        _commit(cache, f"s{i}")
    fresh = CacheDir.open(cache.directory)  # another process: the index comes from the journal
    fresh.index()
    calls: list[int] = []
    before = _bytes_read()
    t0 = time.perf_counter()
    verdicts = [fresh.cached_slide(f"s{i}", fingerprint=_fingerprint(calls), source=SOURCE, source_state="st")
                for i in range(20)]
    per_slide = (time.perf_counter() - t0) / 20
    assert {v.status for v in verdicts} == {"done"} and calls == []
    assert _bytes_read() - before < 4096  # each file is 64 x 256 float16 = 32 KiB: none was read
    assert per_slide < 0.01  # a stat or a few; well under a millisecond on an idle machine
    assert fresh.n_patches("s3") == 64


def test_another_source_state_computes_the_fingerprint_and_records_the_new_state(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    _commit(cache, "s1")
    calls: list[int] = []
    verdict = cache.cached_slide("s1", fingerprint=_fingerprint(calls), source=SOURCE, source_state="moved")
    assert verdict.status == "done"
    assert calls == [1]
    cache.record_verified()
    cache.compact()
    assert read_index(cache.directory)["s1"].source_state == "moved"
    other = CacheDir.open(cache.directory)
    verdict = other.cached_slide("s1", fingerprint=_fingerprint(calls), source=SOURCE, source_state="moved")
    assert verdict.status == "done"
    assert calls == [1]
    edited = other.cached_slide("s1", fingerprint=lambda: "new", source=SOURCE, source_state="edited")
    assert edited.status == "redo" and "changed since it was extracted" in edited.reason
    elsewhere = other.cached_slide("s1", fingerprint=lambda: "new", source=Path("/b/slide.svs"), source_state="x")
    assert elsewhere.status == "conflict" and "--slide-id-prefix" in elsewhere.reason


def test_a_file_changed_in_place_is_read_through_and_its_damage_found(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    _commit(cache, "s1")
    path = cache.slide_path("s1")
    with h5py.File(path, "r") as f:
        offset = f["features"].id.get_offset()
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset + 10] ^= 0xFF  # one flipped bit pattern in a feature value
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same size and mtime; the inode too; ctime moved
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    reopened = CacheDir.open(cache.directory)
    verdict = reopened.cached_slide("s1", fingerprint=lambda: "fp", source=SOURCE, source_state="st")
    assert verdict.status == "redo" and "is corrupt" in verdict.reason


@needs_proc_io
def test_a_copied_cache_is_read_through_once_then_indexed_again(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "a")
    for i in range(5):
        _commit(cache, f"s{i}")
    cache.compact()
    copy = tmp_path / "b" / cache.directory.name
    shutil.copytree(cache.directory, copy)  # new inodes: every entry is stale
    first = CacheDir.open(copy)
    before = _bytes_read()
    assert all(first.cached_slide(f"s{i}", fingerprint=lambda: "fp", source=SOURCE, source_state="st").status == "done"
               for i in range(5))
    assert _bytes_read() - before > 5 * 64 * 256 * 2  # every file was read through and checked
    first.record_verified()
    second = CacheDir.open(copy)
    second.index()
    before = _bytes_read()
    assert all(second.cached_slide(f"s{i}", fingerprint=lambda: "fp", source=SOURCE, source_state="st").status == "done"
               for i in range(5))
    assert _bytes_read() - before < 4096


def test_an_unreadable_index_is_an_empty_one(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    _commit(cache, "s1")
    cache.compact()
    (cache.directory / ".index.json").write_text("{not json")
    assert read_index(cache.directory) == {}
    assert CacheDir.open(cache.directory).cached_slide("s1", fingerprint=lambda: "fp", source=SOURCE).status == "done"


def test_file_state_covers_every_file_of_a_zarr_store(tmp_path: Path) -> None:
    cache = _cache(tmp_path, "zarr")
    _commit(cache, "s1")
    store = cache.slide_path("s1")
    state = file_state(store)
    chunk = next(p for p in (store / "features").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(np.zeros(chunk.stat().st_size, np.uint8).tobytes())  # same size, new bytes
    assert file_state(store) != state
    assert file_state(tmp_path / "missing.h5") is None
