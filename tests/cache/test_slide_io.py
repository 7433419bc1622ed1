"""Writing and reading one slide: round trips, byte-identical rewrites, validation, completeness."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from balnmp_cache.cache import SCHEMA_VERSION, is_complete, read_slide, slide_path, write_slide
from balnmp_cache.errors import CacheError

from .conftest import make_slide, provenance

KEY = "0123456789ab"


@pytest.mark.parametrize("format", ["hdf5", "zarr"])
@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_round_trip_keeps_values_dtypes_strings_and_attrs(tmp_path: Path, format: str, dtype: str) -> None:
    attrs = provenance(KEY, patient_id="351899", labels=["N0", "N+(1-2)"], sizes=[1, 2, 3], weights=Path("/w/m.pth"))
    sf = make_slide("351899", n=9, d=5, **attrs)
    sf.patch_key[0] = "patches/351899/ünïcode_0_1_2.jpg"
    path = write_slide(tmp_path, sf, format=format, dtype=dtype)
    assert path == slide_path(tmp_path, "351899", format)

    back = read_slide(path)
    assert back.slide_id == "351899"
    assert back.features.dtype == np.dtype(dtype) and back.features.shape == (9, 5)
    np.testing.assert_array_equal(back.features, sf.features.astype(dtype))
    assert back.coords.dtype == np.int64 and back.region_id.dtype == np.int32
    np.testing.assert_array_equal(back.coords, sf.coords)
    np.testing.assert_array_equal(back.region_id, sf.region_id)
    assert back.patch_key.dtype == object and list(back.patch_key) == list(sf.patch_key)
    assert all(type(k) is str for k in back.patch_key)

    a = back.attrs
    assert a["complete"] is True and a["schema_version"] == SCHEMA_VERSION
    assert (a["slide_id"], a["n_patches"], a["feature_dim"], a["dtype"]) == ("351899", 9, 5, dtype)
    assert a["random_weights"] is False and type(a["input_px"]) is int and a["input_px"] == 224
    assert np.isnan(a["mpp"]) and a["norm_mean"] == [0.485, 0.456, 0.406]
    assert a["labels"] == ["N0", "N+(1-2)"] and a["sizes"] == [1, 2, 3]
    assert a["weights"] == "/w/m.pth" and a["patient_id"] == "351899" and a["cache_key"] == KEY
    assert a["source_format"] == "balnmp" and a["coords_unit"] == "level0_px"
    assert a["created_utc"] == "2026-01-01T00:00:00+00:00" and "package_version" in a


def test_rewrite_of_the_same_slide_is_byte_identical(tmp_path: Path) -> None:
    sf = make_slide("s1", n=20, d=16, **provenance(KEY))
    first = write_slide(tmp_path / "a", sf)
    second = write_slide(tmp_path / "b", make_slide("s1", n=20, d=16, **provenance(KEY)))
    digest = hashlib.sha256(first.read_bytes()).hexdigest()
    assert hashlib.sha256(second.read_bytes()).hexdigest() == digest
    # Rewriting in place (the resume path) gives the same bytes too; another created_utc does not.
    write_slide(tmp_path / "a", sf)
    assert hashlib.sha256(first.read_bytes()).hexdigest() == digest
    later = write_slide(tmp_path / "c", make_slide("s1", n=20, d=16, **provenance(KEY, created_utc="2027-01-01")))
    assert later.read_bytes() != first.read_bytes()


def test_hdf5_datasets_are_contiguous_and_uncompressed(tmp_path: Path) -> None:
    path = write_slide(tmp_path, make_slide("s1", **provenance(KEY)))
    with h5py.File(path) as f:
        for name in ("features", "coords", "region_id", "patch_key"):
            assert f[name].chunks is None and f[name].compression is None
        assert h5py.check_string_dtype(f["patch_key"].dtype).encoding == "utf-8"
        assert f.attrs["complete"] == np.True_


def test_zarr_rewrite_replaces_the_old_store_and_leaves_nothing_behind(tmp_path: Path) -> None:
    write_slide(tmp_path, make_slide("s1", n=4, **provenance(KEY)), format="zarr")
    path = write_slide(tmp_path, make_slide("s1", n=11, seed=3, **provenance(KEY)), format="zarr")
    assert read_slide(path).features.shape == (11, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks", "s1.zarr"]
    assert list((tmp_path / ".locks").iterdir()) == []
    meta = json.loads((path / "zarr.json").read_text())
    assert meta["attributes"]["complete"] is True and meta["zarr_format"] == 3


def test_write_rejects_bad_input_with_clear_messages(tmp_path: Path) -> None:
    good = make_slide("s1", **provenance(KEY))
    empty = make_slide("s1", n=0)
    with pytest.raises(CacheError, match=r"no patches.*status 'empty'"):
        write_slide(tmp_path, empty)
    nan = make_slide("s1")
    nan.features[2, 3] = np.nan
    with pytest.raises(CacheError, match="1 NaN/inf"):
        write_slide(tmp_path, nan)
    huge = make_slide("s1")
    huge.features[0, 0] = 1e6
    with pytest.raises(CacheError, match=r"float16's range.*float32"):
        write_slide(tmp_path, huge)
    assert write_slide(tmp_path / "f32", huge, dtype="float32").exists()
    bad_coords = make_slide("s1")
    bad_coords.coords = bad_coords.coords[:, :1]
    with pytest.raises(CacheError, match=r"coords of slide 's1' have shape \(6, 1\)"):
        write_slide(tmp_path, bad_coords)
    short_keys = make_slide("s1")
    short_keys.patch_key = short_keys.patch_key[:-1]
    with pytest.raises(CacheError, match="patch_key"):
        write_slide(tmp_path, short_keys)
    with pytest.raises(CacheError, match="'float64' is not one of float16, float32; change --dtype"):
        write_slide(tmp_path, good, dtype="float64")  # type: ignore[arg-type]
    with pytest.raises(CacheError, match="--format"):
        write_slide(tmp_path, good, format="npz")  # type: ignore[arg-type]
    with pytest.raises(CacheError, match="attribute 'mpp' = None"):
        write_slide(tmp_path, make_slide("s1", mpp=None))
    assert not any(p.suffix == ".h5" for p in tmp_path.iterdir())


@pytest.fixture
def complete_h5(tmp_path: Path) -> Path:
    return write_slide(tmp_path / "c", make_slide("s1", n=200, d=64, **provenance(KEY)))


def test_is_complete_checks_flag_and_key(complete_h5: Path) -> None:
    assert is_complete(complete_h5)
    assert is_complete(complete_h5, cache_key=KEY)
    assert not is_complete(complete_h5, cache_key="ffffffffffff")
    with h5py.File(complete_h5, "r+") as f:
        del f.attrs["complete"]
    assert not is_complete(complete_h5)


def test_is_complete_is_false_for_truncated_corrupt_and_missing_files(complete_h5: Path, tmp_path: Path) -> None:
    data = complete_h5.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(bytes(range(256)) * 64)
    flipped = tmp_path / "flipped.h5"
    flipped.write_bytes(b"\0" * 64 + data[64:])
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    for path in (truncated, garbage, flipped, empty, tmp_path / "absent.h5", tmp_path):
        assert is_complete(path) is False, path
    with pytest.raises(CacheError, match=r"truncated.h5"):
        read_slide(truncated)


def test_is_complete_on_zarr_stores(tmp_path: Path) -> None:
    path = write_slide(tmp_path, make_slide("s1", **provenance(KEY)), format="zarr")
    assert is_complete(path, cache_key=KEY)
    meta_file = path / "zarr.json"
    meta = json.loads(meta_file.read_text())
    del meta["attributes"]["complete"]
    meta_file.write_text(json.dumps(meta))
    assert not is_complete(path)
    with pytest.raises(CacheError, match="incomplete"):
        read_slide(path)
    meta_file.write_text("{not json")
    assert not is_complete(path)
    broken = tmp_path / "broken.zarr"
    shutil.copytree(tmp_path / "s1.zarr", broken)
    shutil.rmtree(broken / "features")
    assert not is_complete(broken)
