"""CacheDir: creating and opening a cache directory, slide completion, locks, the manifest and recovery."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import h5py
import pytest

from balnmp_cache.cache import CacheDir, ManifestRow, cache_key, is_complete, update_manifest, write_slide
from balnmp_cache.errors import CacheError, StorageError

from .conftest import PARAMS, make_slide, provenance


def create(tmp_path: Path, format: str = "hdf5", dtype: str = "float16", **params: object) -> CacheDir:
    """A cache of PARAMS (plus ``params``) under ``tmp_path/root``."""
    return CacheDir.create(tmp_path / "root", {**PARAMS, **params}, encoder="efficientnet_lite0", mode="avg",
                           format=format, dtype=dtype)


def test_create_names_the_folder_by_the_key_and_writes_cache_json(tmp_path: Path) -> None:
    cache = create(tmp_path)
    assert cache.key == cache_key(PARAMS) and cache.format == "hdf5" and cache.dtype == "float16"
    assert cache.directory == tmp_path / "root" / f"efficientnet_lite0-avg-{cache.key}"
    text = (cache.directory / "cache.json").read_text()
    assert hashlib.sha256(text.rstrip("\n").encode()).hexdigest()[:12] == cache.key == cache.hashed_key()
    assert create(tmp_path) == cache  # the same parameters: the same directory
    assert create(tmp_path, patch_px=512).directory != cache.directory
    with pytest.raises(CacheError, match="--format"):
        create(tmp_path, format="npz")


def test_open_finds_the_cache_under_its_root_with_key_and_format(tmp_path: Path) -> None:
    as_extract = {"format": "zarr", "dtype": "float32"}  # extract hashes both into the key
    made = CacheDir.create(tmp_path / "a", {**PARAMS, **as_extract}, encoder="e", mode="avg", format="zarr",
                           dtype="float32")
    opened = CacheDir.open(tmp_path / "a")
    assert opened == CacheDir(made.directory, made.key, "zarr", "float32")
    assert opened.slide_path("s1") == made.directory / "s1.zarr" and opened.hashed_key() == opened.key
    bare = create(tmp_path / "b")  # PARAMS names no format: such a folder can be read, not written
    opened = CacheDir.open(bare.directory)
    assert opened.key == bare.key and opened.format is None
    with pytest.raises(CacheError, match=r"no cache.json naming its format"):
        opened.slide_path("s1")
    (bare.directory / "cache.json").write_text("{broken")
    assert CacheDir.open(bare.directory).key == bare.key  # readers of params() report the broken file
    with pytest.raises(CacheError, match="not valid JSON"):
        opened.hashed_key()


def test_cached_slide_is_done_only_for_this_key_the_same_input_and_intact_content(tmp_path: Path) -> None:
    cache = create(tmp_path)
    calls: list[str] = []

    def fingerprint(value: str):  # type: ignore[no-untyped-def]
        return lambda: calls.append(value) or value

    source = Path("/d/s1.svs")
    assert cache.cached_slide("s1", fingerprint=fingerprint("abc"), source=source).status == "absent"
    assert calls == []  # no file: the input is not read
    attrs = provenance(cache.key, source_path=str(source), source_fingerprint="abc")
    path = cache.write(make_slide("s1", n=4, **attrs))
    assert cache.cached_slide("s1", fingerprint=fingerprint("abc"), source=source).status == "done"
    # the same source path, another fingerprint: the source was edited -> extract it again
    edited = cache.cached_slide("s1", fingerprint=fingerprint("new"), source=source)
    assert edited.status == "redo" and "changed since it was extracted" in edited.reason
    # another source under the same id: never replaced, the reason names both sources and the fixes
    other = cache.cached_slide("s1", fingerprint=fingerprint("new"), source=Path("/e/s1.svs"))
    assert other.status == "conflict"
    assert "from /d/s1.svs, a different slide than /e/s1.svs" in other.reason
    assert "--force" in other.reason and "--slide-id-prefix PREFIX" in other.reason
    # moved but identical (the same fingerprint): still done
    assert cache.cached_slide("s1", fingerprint=fingerprint("abc"), source=Path("/e/s1.svs")).status == "done"
    with h5py.File(path, "r+") as f:  # another finite value
        f["features"][0, 0] += 1
    corrupt = cache.cached_slide("s1", fingerprint=fingerprint("abc"), source=source)
    assert corrupt.status == "redo" and corrupt.reason.startswith("s1.h5 is corrupt (features: checksum mismatch")
    write_slide(cache.directory, make_slide("s2", **provenance("ffffffffffff"), source_fingerprint="abc"))
    assert cache.cached_slide("s2", fingerprint=fingerprint("abc"), source=source).status == "redo"  # another key
    assert cache.n_patches("s1") == 4 and cache.n_patches("absent") == 0
    with pytest.raises(CacheError, match="cannot name a cache file"):
        cache.cached_slide(".hidden", fingerprint=fingerprint("abc"), source=source)


def test_a_vanished_cache_folder_is_reported_and_not_made_again(tmp_path: Path) -> None:
    cache = create(tmp_path)
    shutil.rmtree(cache.directory)
    for attempt in (lambda: cache.lock("s1"), lambda: cache.write(make_slide("s1", **provenance(cache.key))),
                    lambda: cache.record([ManifestRow(slide_id="s1", status="ok", n_patches=1)])):
        with pytest.raises(StorageError, match=r"the cache folder no longer exists \(ENOENT\)"):
            attempt()
    assert not cache.directory.exists()


def test_write_uses_the_directory_format_and_dtype(tmp_path: Path) -> None:
    cache = create(tmp_path, format="zarr")
    path = cache.write(make_slide("s1", **provenance(cache.key)))
    assert path == cache.slide_path("s1") == cache.directory / "s1.zarr"
    assert is_complete(path, cache_key=cache.key)
    assert cache.slide_files() == {"s1": path}


def test_lock_is_exclusive_until_released(tmp_path: Path) -> None:
    cache = create(tmp_path)
    held = cache.lock("s1")
    assert held is not None and cache.lock("s1") is None and cache.lock("s2") is not None
    held.release()
    assert cache.lock("s1") is not None


def test_record_merges_manifest_rows(tmp_path: Path) -> None:
    cache = create(tmp_path)
    cache.record([ManifestRow(slide_id="b", status="empty", reason="no patch")])
    cache.record([ManifestRow(slide_id="a", status="ok", n_patches=3), ManifestRow(slide_id="b", status="failed")])
    assert [(r.slide_id, r.status) for r in cache.manifest()] == [("a", "ok"), ("b", "failed")]


def test_recover_cleans_temporaries_and_restores_lost_rows_from_the_files(tmp_path: Path) -> None:
    cache = create(tmp_path)
    for sid in ("s1", "s2", "s3", "s4"):
        cache.write(make_slide(sid, n=5, **provenance(cache.key, patient_id=f"P{sid}", source_path=f"/d/{sid}.svs")))
    write_slide(cache.directory, make_slide("s5", **provenance("ffffffffffff")))  # another key: not ours to record
    update_manifest(cache.directory, [ManifestRow(slide_id="s1", patient_id="kept", status="ok", n_patches=5)])
    stale = cache.directory / ".tmp-999999-deadbeef-s9.h5"  # left by a killed writer
    stale.write_bytes(b"partial")
    busy = cache.lock("s4")  # being written by someone else: left to them

    rows = cache.recover()
    assert [(r.slide_id, r.patient_id, r.source, r.status, r.n_patches) for r in rows] == [
        ("s2", "Ps2", "/d/s2.svs", "ok", 5),
        ("s3", "Ps3", "/d/s3.svs", "ok", 5),
    ]
    assert not stale.exists()
    assert {r.slide_id: r.patient_id for r in cache.manifest()} == {"s1": "kept", "s2": "Ps2", "s3": "Ps3"}
    busy.release()
    assert [r.slide_id for r in cache.recover()] == ["s4"]
    assert cache.recover() == []
