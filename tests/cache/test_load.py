"""load_cache: one preallocated array with offsets, skipping incomplete files, refusing mixed provenance."""

from __future__ import annotations

import logging
import shutil
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from balnmp_cache.cache import ManifestRow, load_cache, read_slide, resolve_cache_dir, update_manifest, write_slide
from balnmp_cache.errors import CacheError, CorruptCacheError
from balnmp_cache.progress import ProgressEvent

from .conftest import make_slide, provenance


@pytest.mark.parametrize("format", ["hdf5", "zarr"])
def test_load_concatenates_slides_in_one_array_with_offsets(build_cache: Callable[..., Path], format: str) -> None:
    cache_dir = build_cache({"s2": 7, "s1": 5, "s3": 3}, format=format)
    events: list[ProgressEvent] = []
    cache = load_cache(cache_dir, progress=events.append)
    assert cache.directory == cache_dir
    assert cache.slide_ids == ["s1", "s2", "s3"] and len(cache) == 3
    assert cache.patient_ids == ["Ps1", "Ps2", "Ps3"]
    assert cache.offsets.tolist() == [0, 5, 12, 15] and cache.offsets.dtype == np.int64
    assert cache.features.shape == (15, 8) and cache.features.dtype == np.float16
    assert cache.features.flags.owndata and cache.features.flags.c_contiguous
    assert cache.coords.shape == (15, 2) and cache.region_id.shape == (15,) and cache.patch_key.shape == (15,)
    for sid in cache.slide_ids:
        rows = cache.slide_rows(sid)
        one = read_slide(next(cache_dir.glob(f"{sid}.*")))
        np.testing.assert_array_equal(cache.features[rows], one.features)
        np.testing.assert_array_equal(cache.coords[rows], one.coords)
        np.testing.assert_array_equal(cache.region_id[rows], one.region_id)
        assert list(cache.patch_key[rows]) == list(one.patch_key)
        assert np.shares_memory(cache.slide_features(sid), cache.features)
    assert cache.attrs["encoder"] == "efficientnet_lite0" and cache.attrs["random_weights"] is False
    assert cache.attrs["feature_dim"] == 8 and cache.attrs["dtype"] == "float16"
    assert "slide_id" not in cache.attrs and "n_patches" not in cache.attrs and "patient_id" not in cache.attrs
    assert cache.nbytes >= cache.features.nbytes + cache.coords.nbytes
    assert [e.kind for e in events] == ["start", "advance", "advance", "advance", "end"]
    with pytest.raises(CacheError, match="slide 'nope' is not in the cache"):
        cache.slide_rows("nope")


def test_load_subset_and_missing_ids(build_cache: Callable[..., Path], caplog: pytest.LogCaptureFixture) -> None:
    cache_dir = build_cache()
    with caplog.at_level(logging.WARNING):
        cache = load_cache(cache_dir, slide_ids=["s3", "ghost", "s1"])
    assert cache.slide_ids == ["s1", "s3"] and cache.offsets.tolist() == [0, 5, 8]
    assert "ghost" in caplog.text


def test_load_skips_incomplete_files_with_a_warning(
    build_cache: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = build_cache()
    with h5py.File(cache_dir / "s2.h5", "r+") as f:
        del f.attrs["complete"]
    with caplog.at_level(logging.WARNING):
        cache = load_cache(cache_dir)
    assert cache.slide_ids == ["s1", "s3"]
    assert "s2.h5 (incomplete" in caplog.text


def test_load_refuses_unreadable_and_damaged_files_naming_each(build_cache: Callable[..., Path]) -> None:
    cache_dir = build_cache({"s1": 5, "s2": 7, "s3": 3})
    (cache_dir / "s4.h5").write_bytes(b"not hdf5 at all")
    with h5py.File(cache_dir / "s2.h5", "r+") as f:  # another finite value: only the checksum tells
        f["coords"][0, 0] += 1
    with pytest.raises(CorruptCacheError) as caught:
        load_cache(cache_dir)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{cache_dir} is corrupt: 2 slides are unreadable or damaged")
    assert "slide 's2' (s2.h5: coords: checksum mismatch" in message
    assert "slide 's4' (s4.h5: cannot be opened as HDF5" in message
    assert message.endswith("delete s2.h5, s4.h5 and re-run extract: it extracts missing slides again")


def test_load_refuses_mixed_provenance_naming_the_files(build_cache: Callable[..., Path]) -> None:
    cache_dir = build_cache()
    key = load_cache(cache_dir).attrs["cache_key"]
    write_slide(cache_dir, make_slide("s9", **provenance(key, encoder="resnet18")))
    with pytest.raises(CacheError, match=r"encoder: 'resnet18' in s9.h5; 'efficientnet_lite0' in s1.h5, s2.h5, s3.h5"):
        load_cache(cache_dir)
    (cache_dir / "s9.h5").unlink()
    write_slide(cache_dir, make_slide("s8", d=16, **provenance(key)))
    with pytest.raises(CacheError, match=r"feature_dim: 16 in s8.h5"):
        load_cache(cache_dir)
    (cache_dir / "s8.h5").unlink()
    write_slide(cache_dir, make_slide("s7", **provenance(key)), dtype="float32")
    with pytest.raises(CacheError, match=r"dtype: 'float32' in s7.h5"):
        load_cache(cache_dir)


def test_load_skips_files_of_another_cache_key(
    build_cache: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = build_cache()
    write_slide(cache_dir, make_slide("s5", **provenance("ffffffffffff")))
    with caplog.at_level(logging.WARNING):
        assert load_cache(cache_dir).slide_ids == ["s1", "s2", "s3"]
    assert "s5.h5 (cache_key 'ffffffffffff'" in caplog.text


def test_patient_id_falls_back_to_manifest_then_slide_id(tmp_path: Path) -> None:
    write_slide(tmp_path, make_slide("a", **provenance("0123456789ab", patient_id="PA")))
    write_slide(tmp_path, make_slide("b", **provenance("0123456789ab", patient_id="")))
    write_slide(tmp_path, make_slide("c", **provenance("0123456789ab", patient_id="")))
    update_manifest(tmp_path, [ManifestRow(slide_id="b", patient_id="PB", status="ok", n_patches=6)])
    assert load_cache(tmp_path).patient_ids == ["PA", "PB", "c"]


def test_root_with_one_cache_resolves_and_with_two_is_refused(build_cache: Callable[..., Path], tmp_path: Path) -> None:
    cache_dir = build_cache()
    root = cache_dir.parent
    assert resolve_cache_dir(root) == cache_dir
    assert load_cache(root).slide_ids == ["s1", "s2", "s3"]
    shutil.copytree(cache_dir, root / "resnet18-avg-ffffffffffff")
    expected = r"holds 2 caches \(efficientnet_lite0-avg-.*, resnet18-avg-ffffffffffff\); pass one"
    with pytest.raises(CacheError, match=expected):
        load_cache(root)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CacheError, match="no feature cache"):
        load_cache(empty)
    with pytest.raises(CacheError, match="not a directory"):
        load_cache(tmp_path / "absent")


def test_load_peak_memory_stays_near_one_copy_of_the_features(tmp_path: Path) -> None:
    for i in range(8):
        write_slide(tmp_path, make_slide(f"s{i}", n=1000, d=512, seed=i, **provenance("0123456789ab")))
    tracemalloc.start()
    try:
        cache = load_cache(tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cache.features.nbytes == 8 * 1000 * 512 * 2
    # features + coords + keys, with no second copy of the features on the way.
    assert peak < 1.25 * cache.features.nbytes + 2 * cache.coords.nbytes + 2**20
