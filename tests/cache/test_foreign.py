"""Reading CLAM, TRIDENT and STAMP feature files, written here with h5py the way those tools write them."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from balnmp_cache.cache import is_complete, load_cache, read_slide
from balnmp_cache.errors import CacheError


def write_clam(path: Path, n: int, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CLAM extract_features_fp.py: resizable (32, D)-chunked float32 features, int32 coords, no attributes."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d)).astype(np.float32)
    coords = rng.integers(0, 50_000, size=(n, 2)).astype(np.int32)
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=features, maxshape=(None, d), chunks=(32, d))
        f.create_dataset("coords", data=coords, maxshape=(None, 2), chunks=(32, 2))
    return features, coords


def write_trident(path: Path, n: int, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """TRIDENT: (1, D)-chunked features with an 'encoder' attribute, int64 coords carrying patching attributes."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d)).astype(np.float32)
    coords = rng.integers(0, 50_000, size=(n, 2)).astype(np.int64)
    with h5py.File(path, "w") as f:
        feats = f.create_dataset("features", data=features, chunks=(1, d))
        feats.attrs.update({"encoder": "uni_v1", "name": path.stem, "savetodir": str(path.parent)})
        cds = f.create_dataset("coords", data=coords)
        cds.attrs.update({"patch_size": 256, "patch_size_level0": 512, "level0_magnification": 40, "name": path.stem})
    return features, coords


def write_stamp(path: Path, n: int, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """STAMP v2: float16 'feats', float32 coords in µm, provenance as file attributes."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d)).astype(np.float16)
    coords = (rng.integers(0, 5_000, size=(n, 2)) * 256.0).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["feats"] = features
        f["coords"] = coords
        f.attrs.update({"stamp_version": "2.3.0", "extractor": "ctranspath", "unit": "um", "tile_size_um": 256.0,
                        "tile_size_px": 224, "code_hash": "c54ce06", "feat_type": "tile"})
    return features, coords


def test_read_clam(tmp_path: Path) -> None:
    features, coords = write_clam(tmp_path / "TCGA-A1.h5", 70)
    sf = read_slide(tmp_path / "TCGA-A1.h5")
    assert sf.slide_id == "TCGA-A1"
    np.testing.assert_array_equal(sf.features, features)
    assert sf.coords.dtype == np.int64
    np.testing.assert_array_equal(sf.coords, coords)
    assert (sf.region_id == -1).all() and sf.region_id.dtype == np.int32
    assert sf.patch_key[0] == f"TCGA-A1_{coords[0, 0]}_{coords[0, 1]}"
    assert sf.attrs["source_format"] == "clam" and sf.attrs["coords_unit"] == "level0_px"
    assert sf.attrs["feature_dim"] == 16 and sf.attrs["dtype"] == "float32"
    assert not is_complete(tmp_path / "TCGA-A1.h5")  # not ours: no completion flag to trust


def test_read_trident_keeps_its_attributes(tmp_path: Path) -> None:
    features, coords = write_trident(tmp_path / "slide_1.h5", 40)
    sf = read_slide(tmp_path / "slide_1.h5")
    np.testing.assert_array_equal(sf.features, features)
    np.testing.assert_array_equal(sf.coords, coords)
    assert sf.attrs["source_format"] == "trident" and sf.attrs["encoder"] == "uni_v1"
    assert sf.attrs["patch_size_level0"] == 512 and sf.attrs["level0_magnification"] == 40


def test_read_stamp_keeps_micron_coords(tmp_path: Path) -> None:
    features, coords = write_stamp(tmp_path / "slide.h5", 30)
    sf = read_slide(tmp_path / "slide.h5")
    assert sf.features.dtype == np.float16
    np.testing.assert_array_equal(sf.features, features)
    assert sf.coords.dtype == np.float32
    np.testing.assert_array_equal(sf.coords, coords)
    assert sf.attrs["source_format"] == "stamp" and sf.attrs["coords_unit"] == "um"
    assert sf.attrs["encoder"] == "ctranspath" and sf.attrs["tile_size_um"] == 256.0


@pytest.mark.parametrize("writer", [write_clam, write_trident, write_stamp], ids=["clam", "trident", "stamp"])
def test_load_a_folder_of_foreign_files(tmp_path: Path, writer) -> None:  # type: ignore[no-untyped-def]
    expected = [writer(tmp_path / f"slide_{i}.h5", n, seed=i)[0] for i, n in enumerate((10, 33, 5))]
    cache = load_cache(tmp_path)
    assert cache.slide_ids == ["slide_0", "slide_1", "slide_2"]
    assert cache.patient_ids == cache.slide_ids
    assert cache.offsets.tolist() == [0, 10, 43, 48]
    np.testing.assert_array_equal(cache.features, np.concatenate(expected))
    assert cache.attrs["source_format"] == writer.__name__.removeprefix("write_")


def test_mixing_stamp_and_clam_files_is_refused(tmp_path: Path) -> None:
    write_clam(tmp_path / "a.h5", 5)
    write_stamp(tmp_path / "b.h5", 5)
    with pytest.raises(CacheError, match=r"disagree.*coords_unit"):
        load_cache(tmp_path)


def test_unknown_layout_is_named(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f["embeddings"] = np.zeros((3, 4))
    with pytest.raises(CacheError, match=r"odd.h5 has datasets \['embeddings'\].*STAMP \(feats, coords\)"):
        read_slide(tmp_path / "odd.h5")
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["features"] = np.zeros((3, 4), np.float32)
        f["coords"] = np.zeros((2, 2), np.int64)
    with pytest.raises(CacheError, match=r"coords has shape \(2, 2\); expected \(3, 2\)"):
        read_slide(tmp_path / "bad.h5")
