"""The store table: every format writes, describes, checks and reads one slide the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from balnmp_cache.cache import FORMATS, STORES, read_slide, store_for
from balnmp_cache.cache.stores import store_of
from balnmp_cache.errors import CacheError

from .conftest import make_slide, provenance

KEY = "0123456789ab"


def test_every_format_has_a_store_and_a_suffix() -> None:
    assert set(STORES) == set(FORMATS)
    assert all(store.format == name for name, store in STORES.items())
    with pytest.raises(CacheError, match="'npz' is not one of hdf5, zarr; change --format"):
        store_for("npz")


@pytest.mark.parametrize("format", sorted(STORES))
def test_a_store_round_trips_one_slide_and_publishes_over_an_old_file(tmp_path: Path, format: str) -> None:
    store = store_for(format)
    sf = make_slide("s1", n=7, d=5, **provenance(KEY))
    arrays = {"features": sf.features, "coords": sf.coords, "region_id": sf.region_id, "patch_key": sf.patch_key}
    attrs = {**sf.attrs, "slide_id": "s1", "schema_version": 1, "n_patches": 7, "feature_dim": 5, "dtype": "float32"}
    final = tmp_path / f"s1{FORMATS[format]}"
    for round_ in range(2):  # the second publish replaces the first file
        tmp = tmp_path / f".tmp-1-0000000{round_}-s1{FORMATS[format]}"
        store.write(tmp, arrays, attrs)
        assert store.is_complete(tmp, KEY) and not store.is_complete(tmp, "ffffffffffff")
        store.publish(tmp, final, old=tmp_path / f".old-1-0000000{round_}-s1{FORMATS[format]}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]
    assert store_of(final) is store
    header = store.header(final)
    assert (header.storage, header.n_patches, header.feature_dim, header.complete) == (format, 7, 5, True)
    features = np.empty((7, 5), dtype=header.features_dtype)
    coords = np.empty((7, 2), dtype=header.coords_dtype)
    region_id, patch_key = store.read_into(header, features, coords)
    np.testing.assert_array_equal(features, sf.features)
    np.testing.assert_array_equal(coords, sf.coords)
    np.testing.assert_array_equal(region_id, sf.region_id)
    assert list(patch_key) == list(sf.patch_key)
    assert read_slide(final).attrs["cache_key"] == KEY


@pytest.mark.parametrize("format", sorted(STORES))
def test_a_store_refuses_what_it_cannot_open_with_the_file_named(tmp_path: Path, format: str) -> None:
    bad = tmp_path / f"bad{FORMATS[format]}"
    if format == "zarr":
        bad.mkdir()
        (bad / "zarr.json").write_text("{not json")
    else:
        bad.write_bytes(b"not hdf5")
    with pytest.raises(CacheError, match="bad"):
        store_for(format).header(bad)
