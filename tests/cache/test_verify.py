"""verify_cache finds each planted problem, names its file, and modifies nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from balnmp_cache.cache import ManifestRow, load_cache, update_manifest, verify_cache, write_slide
from balnmp_cache.cache.verify import Problem
from balnmp_cache.errors import CacheError

from .conftest import make_slide, provenance


def snapshot(directory: Path) -> dict[str, tuple[int, int, str]]:
    """Every path under ``directory`` with its size, mtime and content digest."""
    out = {}
    for path in sorted(directory.rglob("*")):
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out[str(path.relative_to(directory))] = (stat.st_size, stat.st_mtime_ns, digest)
    return out


def problems_of(problems: list[Problem], path: Path) -> list[str]:
    return [p.message for p in problems if p.path == path]


@pytest.mark.parametrize("format", ["hdf5", "zarr"])
def test_a_healthy_cache_has_no_problems(build_cache: Callable[..., Path], format: str) -> None:
    cache_dir = build_cache(format=format)
    before = snapshot(cache_dir)
    assert verify_cache(cache_dir) == []
    assert snapshot(cache_dir) == before


def test_each_planted_problem_is_found_in_its_file(build_cache: Callable[..., Path]) -> None:
    cache_dir = build_cache({"s1": 5, "s2": 7, "s3": 3, "s4": 4, "s5": 6, "s6": 2})
    key = load_cache(cache_dir).attrs["cache_key"]
    with h5py.File(cache_dir / "s1.h5", "r+") as f:  # NaN in features
        f["features"][2, 1] = np.nan
    with h5py.File(cache_dir / "s2.h5", "r+") as f:  # wrong shape
        del f["region_id"]
        f.create_dataset("region_id", data=np.zeros(3, np.int32))
    with h5py.File(cache_dir / "s3.h5", "r+") as f:  # missing completion flag
        del f.attrs["complete"]
    write_slide(cache_dir, make_slide("s4", n=4, **provenance(key, encoder="resnet18")))  # inconsistent encoder
    write_slide(cache_dir, make_slide("s5", n=6, **provenance("ffffffffffff")))  # another cache's key
    with h5py.File(cache_dir / "s6.h5", "r+") as f:  # n_patches disagrees with the data
        f.attrs["n_patches"] = np.int64(99)
    orphan = cache_dir / ".tmp-999999-deadbeef-s7.h5"  # left by a writer that was killed
    orphan.write_bytes(b"partial")
    (cache_dir / "s8.h5").write_bytes(b"\x89HDF\r\n\x1a\n garbage")  # corrupt, and no manifest row
    update_manifest(cache_dir, [ManifestRow(slide_id="gone", status="ok", n_patches=3)])  # ok row without a file
    before = snapshot(cache_dir)

    problems = verify_cache(cache_dir)
    assert snapshot(cache_dir) == before, "verify_cache modified the cache"
    assert all(isinstance(p.path, Path) and str(p).startswith(str(p.path)) for p in problems)
    fix = "the file is corrupt; delete it and re-run extract, or re-extract it with --force"
    s1 = problems_of(problems, cache_dir / "s1.h5")
    assert len(s1) == 2 and s1[0].startswith("features: checksum mismatch (stored crc32 ") and s1[0].endswith(fix)
    assert s1[1] == f"1 NaN/inf feature values in 1 patch(es), first rows [2]: {fix}"
    assert problems_of(problems, cache_dir / "s2.h5") == ["region_id has shape (3,); expected (7,)"]
    assert problems_of(problems, cache_dir / "s3.h5") == [
        "incomplete: no complete flag (its writer stopped); delete it and re-run extract"
    ]
    assert problems_of(problems, cache_dir / "s4.h5") == [
        "encoder is 'resnet18' but 5 other slide(s) have 'efficientnet_lite0'"
    ]
    assert problems_of(problems, cache_dir / "s5.h5") == [f"cache_key 'ffffffffffff' is not the directory's key {key}"]
    s6 = problems_of(problems, cache_dir / "s6.h5")
    assert "attribute n_patches is 99; expected 2" in s6
    orphan_msgs = problems_of(problems, orphan)
    assert len(orphan_msgs) == 1 and "stopped writer (pid 999999)" in orphan_msgs[0]
    s8 = problems_of(problems, cache_dir / "s8.h5")
    assert any("cannot be opened as HDF5" in m for m in s8)
    assert any("no 'ok' row for slide 's8' (no row)" in m for m in s8)
    manifest_msgs = problems_of(problems, cache_dir / "manifest.csv")
    assert manifest_msgs == ["slide 'gone' has status ok but no file; re-run extract"]


def test_directory_key_and_cache_json_disagreement(build_cache: Callable[..., Path]) -> None:
    cache_dir = build_cache()
    params = json.loads((cache_dir / "cache.json").read_text())
    (cache_dir / "cache.json").write_text(json.dumps({**params, "patch_px": 512}))
    problems = verify_cache(cache_dir)
    assert [p.path.name for p in problems] == ["cache.json"]
    assert "but the directory is named for" in problems[0].message
    (cache_dir / "cache.json").unlink()
    (cache_dir / "manifest.csv").unlink()
    names = sorted(p.path.name for p in verify_cache(cache_dir))
    assert names[:2] == ["cache.json", "manifest.csv"]


def test_verify_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="does not exist"):
        verify_cache(tmp_path / "absent")
