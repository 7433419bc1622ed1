"""Issue 8, item 2: a full disk, a read-only output and a vanished cache folder during extract.

Each case ends with one line naming the path and the errno, exit code 2, no traceback and no
crash; no temporary is left, what was complete is byte-identical, and once the cause is gone a
re-run gives the same cache as an uninterrupted run. Disk-full and read-only cases need root (a
tmpfs) and skip elsewhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from balnmp_cache.cache import read_manifest
from balnmp_cache.errors import StorageError
from balnmp_cache.extract import run_extract
from balnmp_cache.progress import ProgressEvent

from .conftest import EXTRACT_ARGS, digests, extract_config, fill, run_cli, run_cli_subprocess, snapshot, tmpfs

MAX_STDERR_LINES = 12  # the run's few INFO lines and the one error line


def _temporaries(cache_dir: Path) -> list[str]:
    return sorted(p.name for p in cache_dir.iterdir() if p.name.startswith((".tmp-", ".old-", ".manifest", ".cache")))


def _one_error(result, *needles: str) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stderr[-2000:])
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Segmentation" not in output
    assert len(result.stderr.splitlines()) <= MAX_STDERR_LINES, result.stderr
    (line,) = result.error_lines
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def test_a_full_disk_stops_the_run_with_one_line_and_a_re_run_resumes_to_the_same_cache(
    small_tmpfs: Path, tiny_slides: Path, extracted: Callable[[str], Path]
) -> None:
    first = run_cli("extract", tiny_slides / "a.jpg", "--out", small_tmpfs, *EXTRACT_ARGS)
    assert first.exit_code == 0, first.stderr
    (cache_dir,) = [d for d in small_tmpfs.iterdir() if d.is_dir()]
    done = digests(cache_dir)["a.h5"]
    filler = fill(small_tmpfs, leave_bytes=48_000)

    # a child process: a crash (HDF5 segfaulted on a full disk) would show as a negative exit code
    full = run_cli_subprocess("extract", tiny_slides, "--out", small_tmpfs, *EXTRACT_ARGS)
    _one_error(full, "no space left on the device (ENOSPC)", "slide 'b'", str(cache_dir))
    assert digests(cache_dir)["a.h5"] == done and not (cache_dir / "b.h5").exists()
    assert _temporaries(cache_dir) == []
    rows = {r.slide_id: r for r in read_manifest(cache_dir)}
    assert rows["a"].status == "ok" and rows["b"].status == "failed" and "ENOSPC" in rows["b"].reason

    filler.unlink()  # the cause fixed
    again = run_cli("extract", tiny_slides, "--out", small_tmpfs, *EXTRACT_ARGS)
    assert again.exit_code == 0 and "1 ok, 1 already complete" in again.stdout
    (reference,) = [d for d in extracted("hdf5").iterdir() if d.is_dir()]
    assert cache_dir.name == reference.name and snapshot(cache_dir) == snapshot(reference)
    assert {r.slide_id: r.status for r in read_manifest(cache_dir)} == {"a": "ok", "b": "ok"}
    assert _temporaries(cache_dir) == []


def _read_only_cache(copy_cache: Callable[..., Path], tmp_path: Path, read_only: Callable[[Path], None],
                     extracted: Callable[[str], Path]):
    """An existing cache whose folder is read-only (a read-only tmpfs as root), under a writable --out."""
    (name,) = [d.name for d in extracted("hdf5").iterdir() if d.is_dir()]
    out = tmp_path / "out"
    if os.geteuid() == 0:
        mounted = tmpfs(out / name, "2m")
        cache_dir = mounted.__enter__()
        copy_cache(into=out)
        read_only(cache_dir)
        return out, cache_dir, mounted
    cache_dir = copy_cache(into=out)
    read_only(cache_dir)
    return out, cache_dir, None


def test_a_read_only_cache_fails_with_one_line_and_changes_nothing(
    copy_cache: Callable[..., Path], tmp_path: Path, read_only: Callable[[Path], None],
    extracted: Callable[[str], Path], tiny_slides: Path,
) -> None:
    out, cache_dir, mounted = _read_only_cache(copy_cache, tmp_path, read_only, extracted)
    try:
        before = digests(cache_dir)
        code = "(EROFS)" if os.geteuid() == 0 else "(EACCES)"
        result = run_cli("extract", tiny_slides, "--out", out, "--force", *EXTRACT_ARGS)
        line = _one_error(result, code, str(cache_dir))
        assert "remount it read-write or write to another folder" in line or "writable" in line
        assert digests(cache_dir) == before
    finally:
        if mounted is not None:
            mounted.__exit__(None, None, None)


def test_a_read_only_out_root_is_one_storage_error_naming_the_path(read_only_dir: Path, tiny_slides: Path) -> None:
    with pytest.raises(StorageError) as caught:
        run_extract(extract_config([tiny_slides], read_only_dir / "cache"))
    message = str(caught.value)
    assert "\n" not in message and str(read_only_dir / "cache") in message
    assert "(EROFS)" in message or "(EACCES)" in message
    assert list(read_only_dir.iterdir()) == []


def test_a_read_only_out_root_through_the_cli_is_one_line(read_only_dir: Path, tiny_slides: Path) -> None:
    result = run_cli_subprocess("extract", tiny_slides, "--out", read_only_dir / "cache", *EXTRACT_ARGS)
    _one_error(result, str(read_only_dir))


def test_a_cache_folder_removed_during_the_run_is_reported_not_made_again(tmp_path: Path, tiny_slides: Path) -> None:
    out = tmp_path / "out"
    removed: list[Path] = []

    def remove_after_first_slide(event: ProgressEvent) -> None:
        if event.kind == "advance" and "patches/s" in event.info and not removed:
            (cache_dir,) = [d for d in out.iterdir() if d.is_dir()]
            shutil.rmtree(cache_dir)
            removed.append(cache_dir)

    with pytest.raises(StorageError) as caught:
        run_extract(extract_config([tiny_slides], out), progress=remove_after_first_slide)
    (cache_dir,) = removed
    assert str(caught.value) == (
        f"cannot write {cache_dir}: the cache folder no longer exists (ENOENT): it was removed, moved or unmounted "
        "during the run; re-run extract when it is back"
    )
    assert not cache_dir.exists()  # no lock or write made it again, empty
