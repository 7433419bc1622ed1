"""Cache key, directory names, slide paths and temporary names."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from balnmp_cache.cache import (
    SCHEMA_VERSION,
    cache_dir_name,
    cache_key,
    canonical_json,
    list_slide_files,
    read_cache_json,
    slide_path,
    write_cache_json,
)
from balnmp_cache.cache.naming import AUX_TEMP_RE, parse_cache_dir_name, parse_temp_name, temp_path
from balnmp_cache.errors import CacheError
from balnmp_cache.fsio import temp_name

from .conftest import PARAMS

# The key of PARAMS, computed once by hand from its canonical JSON: guards against silent changes.
PARAMS_JSON = (
    '{"dtype":"float16","encoder":"efficientnet_lite0","encoder_identifier":"efficientnet_lite0@sha256:57934424",'
    '"input_px":224,"mode":"avg","norm_mean":[0.485,0.456,0.406],"patch_px":256,"schema_version":1,"target_mpp":0.5}'
)


def test_canonical_json_is_sorted_compact_and_versioned() -> None:
    assert canonical_json(PARAMS) == PARAMS_JSON
    assert cache_key(PARAMS) == hashlib.sha256(PARAMS_JSON.encode()).hexdigest()[:12]


def test_cache_key_is_stable_across_spellings_of_the_same_parameters() -> None:
    key = cache_key(PARAMS)
    reordered = dict(reversed(list(PARAMS.items())))
    spelled = {
        **PARAMS,
        "input_px": 224.0,
        "norm_mean": (0.485, 0.456, 0.406),
        "target_mpp": np.float64(0.5),
        "patch_px": np.int64(256),
    }
    assert cache_key(reordered) == key
    assert cache_key(spelled) == key
    assert cache_key({**PARAMS, "schema_version": SCHEMA_VERSION}) == key
    assert len(key) == 12 and int(key, 16) >= 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("encoder", "resnet18"), ("mode", "flat"), ("dtype", "float32"), ("patch_px", 512), ("target_mpp", 0.25),
     ("norm_mean", [0.5, 0.5, 0.5]), ("schema_version", SCHEMA_VERSION + 1)],
)
def test_cache_key_changes_with_every_parameter(field: str, value: object) -> None:
    assert cache_key({**PARAMS, field: value}) != cache_key(PARAMS)


def test_cache_key_handles_nan_paths_and_nesting_but_rejects_objects() -> None:
    params = {"mpp": float("nan"), "weights": Path("/w/model.pth"), "tissue": {"otsu": True, "level": 2}}
    assert '"mpp":"NaN"' in canonical_json(params)
    assert '"weights":"/w/model.pth"' in canonical_json(params)
    assert cache_key(params) == cache_key({**params, "mpp": float("nan")})
    with pytest.raises(CacheError, match=r"tissue.fn"):
        cache_key({"tissue": {"fn": object()}})


def test_cache_json_holds_exactly_the_hashed_bytes(tmp_path: Path) -> None:
    key = write_cache_json(tmp_path, PARAMS)
    text = (tmp_path / "cache.json").read_text()
    assert key == cache_key(PARAMS)
    assert hashlib.sha256(text.rstrip("\n").encode()).hexdigest()[:12] == key
    assert cache_key(read_cache_json(tmp_path)) == key
    assert read_cache_json(tmp_path / "absent") is None
    (tmp_path / "cache.json").write_text("{broken")
    with pytest.raises(CacheError, match="not valid JSON"):
        read_cache_json(tmp_path)
    assert json.loads(text)["schema_version"] == SCHEMA_VERSION


def test_cache_dir_name_is_filesystem_safe_and_parses_back() -> None:
    name = cache_dir_name("timm:vit_base_patch16_224.augreg/in21k", "cls-token", "0123456789ab")
    assert name == "timm_vit_base_patch16_224.augreg_in21k-cls_token-0123456789ab"
    assert "/" not in name and ":" not in name
    assert parse_cache_dir_name(name) == ("timm_vit_base_patch16_224.augreg_in21k", "cls_token", "0123456789ab")
    assert parse_cache_dir_name("efficientnet-lite0-avg-0123456789ab") == ("efficientnet-lite0", "avg", "0123456789ab")
    assert parse_cache_dir_name("not-a-cache") is None
    with pytest.raises(CacheError, match="12 lower-case hex"):
        cache_dir_name("resnet18", "avg", "XYZ")


def test_slide_path_builds_both_formats_and_rejects_unsafe_ids(tmp_path: Path) -> None:
    assert slide_path(tmp_path, "351899", "hdf5") == tmp_path / "351899.h5"
    assert slide_path(tmp_path, "TCGA-01 a", "zarr") == tmp_path / "TCGA-01 a.zarr"
    with pytest.raises(CacheError, match=r"'tiff'.*hdf5, zarr.*--format"):
        slide_path(tmp_path, "a", "tiff")
    for bad in ("", ".hidden", "a/b", "a\\b", "x\ny", "é" * 150):
        with pytest.raises(CacheError, match="cannot name a cache file"):
            slide_path(tmp_path, bad, "hdf5")


def test_temp_names_parse_back_and_are_hidden(tmp_path: Path) -> None:
    tmp = temp_path(tmp_path, "s-1_a.b", "hdf5", token="deadbeef")
    assert tmp.name.startswith(".tmp-") and tmp.parent == tmp_path
    parsed = parse_temp_name(tmp.name)
    assert parsed is not None
    assert (parsed.kind, parsed.token, parsed.slide_id, parsed.suffix) == ("tmp", "deadbeef", "s-1_a.b", ".h5")
    assert parse_temp_name("s1.h5") is None
    assert parse_temp_name(".tmp-12-nothex00-s1.h5") is None


def test_list_slide_files_sorts_by_id_skips_hidden_and_rejects_duplicates(tmp_path: Path) -> None:
    for name in ("b.h5", "a-1.h5", "a.h5", ".tmp-1-deadbeef-c.h5", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "c.zarr").mkdir()
    (tmp_path / "fake.zarr").write_bytes(b"")
    files = list_slide_files(tmp_path)
    assert list(files) == ["a", "a-1", "b", "c"]
    (tmp_path / "b.zarr").mkdir()
    with pytest.raises(CacheError, match="slide 'b' has two files"):
        list_slide_files(tmp_path)


def test_manifest_and_cache_json_temporaries_are_recognised(tmp_path: Path) -> None:
    for target in ("manifest.csv", "cache.json"):
        assert AUX_TEMP_RE.match(temp_name(tmp_path / target).name)  # what fsio writes now
        assert AUX_TEMP_RE.match(f".{target}.123.deadbeef")  # what older versions left
    assert not AUX_TEMP_RE.match(".config.toml.123.deadbeef.tmp")
