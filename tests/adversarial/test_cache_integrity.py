"""Issue 8, item 1: corrupt features never pass verify, load, train or extract's skip check.

Each test damages a real extracted cache the way a disk, a copy or a user would (another finite
value, one flipped byte, a deleted Zarr chunk, a truncated file, a NaN), then asserts the exact
outcome: the exit code, the one-line message naming the slide and the fix, and that nothing else
changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from balnmp_cache.cache import load_cache, read_manifest, verify_cache
from balnmp_cache.cache.checksum import CHECKSUMMED, checksum_attr
from balnmp_cache.errors import CorruptCacheError

from .conftest import EXTRACT_ARGS, digests, run_cli

FIX = "delete it and re-run extract, or re-extract it with --force"


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _offsets(start: int, size: int) -> list[int]:
    """First, last, middle and two seeded byte offsets inside ``[start, start + size)``."""
    rng = np.random.default_rng(size)
    picks = {0, size - 1, size // 2, *rng.integers(0, size, 2).tolist()}
    return sorted(start + int(p) for p in picks)


def _cohort(tmp_path: Path) -> Path:
    path = tmp_path / "cohort.csv"
    path.write_text("patient_id,aln_status,split\na,N0,train\nb,N+(1-2),train\n")
    return path


def _train(cache_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    result = run_cli("train", "--cache", cache_dir, "--cohort", _cohort(tmp_path), "--out", run, "--epochs", "1",
                     "--device", "cpu", "--bag-size", "2")
    return result, run


def test_a_changed_finite_feature_value_is_refused_by_verify_load_and_train(
    copy_cache: Callable[..., Path], tiny_slides: Path, tmp_path: Path
) -> None:
    cache_dir = copy_cache()
    with h5py.File(cache_dir / "a.h5", "r+") as f:  # another finite value: only a checksum can tell
        f["features"][1, 7] = np.float16(float(f["features"][1, 7]) + 0.5)
    before = digests(cache_dir)

    verify = run_cli("verify", cache_dir)
    assert verify.exit_code == 1 and "no problems found" not in verify.stdout
    assert "a.h5" in verify.stdout and "features: checksum mismatch (stored crc32" in verify.stdout

    with pytest.raises(CorruptCacheError) as caught:
        load_cache(cache_dir)
    message = str(caught.value)
    assert "\n" not in message
    head = f"{cache_dir} is corrupt: slide 'a' (a.h5) is unreadable or damaged: features: checksum mismatch"
    assert message.startswith(head)
    command = f"balnmp-cache extract {tiny_slides / 'a.jpg'} --config {cache_dir / 'config.toml'} --force"
    fix = f"re-extract it with: {command} (or delete a.h5 and re-run extract: it extracts missing slides again)"
    assert message.endswith(fix)

    train, run = _train(cache_dir, tmp_path)
    assert train.exit_code == 2 and "Traceback" not in train.stdout + train.stderr
    (line,) = train.error_lines
    assert line == f"error: {message}"
    assert not (run / "predictions.csv").exists() and not (run / "run.json").exists()  # no training started
    assert digests(cache_dir) == before  # refusing changes nothing


def test_extract_re_extracts_a_complete_but_corrupt_slide_and_keeps_the_sound_one(
    copy_cache: Callable[..., Path], tiny_slides: Path
) -> None:
    cache_dir = copy_cache()
    pristine = (cache_dir / "a.h5").read_bytes()
    sound = hashlib.sha256((cache_dir / "b.h5").read_bytes()).hexdigest()
    with h5py.File(cache_dir / "a.h5", "r+") as f:
        f["coords"][0, 1] += 1
    result = run_cli("extract", tiny_slides, "--out", cache_dir.parent, *EXTRACT_ARGS)
    assert result.exit_code == 0, result.stderr
    assert "a: a.h5 is corrupt (coords: checksum mismatch" in result.stderr and "extracting it again" in result.stderr
    assert "1 ok, 1 already complete" in result.stdout
    assert hashlib.sha256((cache_dir / "b.h5").read_bytes()).hexdigest() == sound
    assert verify_cache(cache_dir) == []
    with h5py.File(cache_dir / "a.h5") as new, h5py.File(_write(cache_dir.parent / "pristine.h5", pristine)) as old:
        for name in CHECKSUMMED:
            assert new.attrs[checksum_attr(name)] == old.attrs[checksum_attr(name)]  # the same content again


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_every_flipped_byte_of_every_hdf5_dataset_is_reported_naming_file_and_dataset(
    copy_cache: Callable[..., Path],
) -> None:
    cache_dir = copy_cache()
    path = cache_dir / "a.h5"
    pristine = path.read_bytes()
    with h5py.File(path) as f:
        regions = {name: (f[name].id.get_offset(), f[name].id.get_storage_size()) for name in CHECKSUMMED}
    flips = 0
    for name, (start, size) in regions.items():
        assert start is not None and size > 0
        for offset in _offsets(start, size):
            _flip(path, offset)
            found = [p.message for p in verify_cache(cache_dir) if p.path == path]
            assert any(name in m and "corrupt" in m for m in found), (name, offset - start, found)
            path.write_bytes(pristine)
            flips += 1
    assert flips >= 4 * 3 and verify_cache(cache_dir) == []


def test_every_flipped_byte_of_every_zarr_chunk_is_reported_naming_file_and_dataset(
    copy_cache: Callable[..., Path],
) -> None:
    cache_dir = copy_cache("zarr")
    store = cache_dir / "b.zarr"
    chunks = sorted(p for p in store.rglob("*") if p.is_file() and "c" in p.relative_to(store).parts)
    assert {c.relative_to(store).parts[0] for c in chunks} == set(CHECKSUMMED)
    for chunk in chunks:
        name = chunk.relative_to(store).parts[0]
        pristine = chunk.read_bytes()
        for offset in _offsets(0, len(pristine)):
            _flip(chunk, offset)
            found = [p.message for p in verify_cache(cache_dir) if p.path == store]
            assert any(name in m and "corrupt" in m for m in found), (chunk, offset, found)
            chunk.write_bytes(pristine)
    assert verify_cache(cache_dir) == []


def test_a_deleted_zarr_chunk_is_an_error_never_zeros(copy_cache: Callable[..., Path], tiny_slides: Path,
                                                       tmp_path: Path) -> None:
    cache_dir = copy_cache("zarr")
    (chunk,) = [p for p in (cache_dir / "a.zarr" / "features" / "c").rglob("*") if p.is_file()]
    chunk.unlink()
    (problem,) = [p for p in verify_cache(cache_dir) if p.path == cache_dir / "a.zarr"]
    assert problem.message == f"corrupt: features: 1 of 1 chunk file(s) missing (they would read as zeros); {FIX}"
    with pytest.raises(CorruptCacheError, match=r"slide 'a' \(a.zarr\) is unreadable or damaged: features: 1 of 1"):
        load_cache(cache_dir)
    train, _ = _train(cache_dir, tmp_path)
    assert train.exit_code == 2 and len(train.error_lines) == 1
    assert "slide 'a' (a.zarr) is unreadable or damaged: features: 1 of 1 chunk" in train.error_lines[0]

    result = run_cli("extract", tiny_slides, "--out", cache_dir.parent, "--format", "zarr", *EXTRACT_ARGS)
    assert result.exit_code == 0 and "1 ok, 1 already complete" in result.stdout  # redone, not skipped
    assert verify_cache(cache_dir) == [] and chunk.is_file()


def test_a_truncated_file_is_called_corrupt_with_the_fix_not_a_missing_patient(copy_cache: Callable[..., Path],
                                                                               tmp_path: Path) -> None:
    cache_dir = copy_cache()
    data = (cache_dir / "b.h5").read_bytes()
    (cache_dir / "b.h5").write_bytes(data[: len(data) // 2])
    (problem,) = [p for p in verify_cache(cache_dir) if p.path == cache_dir / "b.h5"]
    assert problem.message.startswith("corrupt: cannot be opened as HDF5") and problem.message.endswith(FIX)
    train, _ = _train(cache_dir, tmp_path)
    assert train.exit_code == 2
    (line,) = train.error_lines
    assert "slide 'b' (b.h5) is unreadable or damaged: cannot be opened as HDF5" in line and "--force" in line


def test_files_without_checksums_still_load_and_verify_notes_them(copy_cache: Callable[..., Path]) -> None:
    cache_dir = copy_cache()
    for name in ("a.h5", "b.h5"):  # as an older version wrote them
        with h5py.File(cache_dir / name, "r+") as f:
            for array in CHECKSUMMED:
                del f.attrs[checksum_attr(array)]
    assert load_cache(cache_dir).slide_ids == ["a", "b"]
    assert verify_cache(cache_dir) == []
    notes = verify_cache(cache_dir, include_notes=True)
    assert [(p.path.name, p.severity, p.message) for p in notes] == [
        (name, "note", "no checksum: written by an older version; re-extract with --force to add one")
        for name in ("a.h5", "b.h5")
    ]
    result = run_cli("verify", cache_dir)
    assert result.exit_code == 0 and "no problems found" in result.stdout and "no checksum" in result.stderr
    with h5py.File(cache_dir / "b.h5", "r+") as f:  # without a checksum, NaN is still refused
        f["features"][0, 0] = np.nan
    with pytest.raises(CorruptCacheError, match=r"slide 'b' \(b.h5\) is unreadable or damaged: 1 NaN/inf feature"):
        load_cache(cache_dir)
    assert {r.slide_id: r.status for r in read_manifest(cache_dir)} == {"a": "ok", "b": "ok"}


def test_a_deleted_checksum_attribute_is_damage_not_an_old_file(copy_cache: Callable[..., Path]) -> None:
    cache_dir = copy_cache()
    with h5py.File(cache_dir / "a.h5", "r+") as f:
        del f.attrs[checksum_attr("region_id")]
    (problem,) = [p for p in verify_cache(cache_dir) if p.path == cache_dir / "a.h5"]
    assert problem.message.startswith("region_id: no checksum stored although the other arrays have one")
