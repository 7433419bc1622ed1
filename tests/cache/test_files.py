"""Writing slide images to disk: the free-space check, a real ENOSPC, and one-line errno messages."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from balnmp_cache.cache import files as cache_files
from balnmp_cache.cache import read_slide, write_slide
from balnmp_cache.cache.hdf5_store import Hdf5Store
from balnmp_cache.errors import StorageError
from balnmp_cache.fsio import describe_os_error
from tests.adversarial.conftest import tmpfs

from .conftest import make_slide, provenance

KEY = "0123456789ab"


def test_the_in_memory_hdf5_image_is_the_file_hdf5_writes_itself(tmp_path: Path) -> None:
    arrays = {
        "features": np.arange(12, dtype=np.float16).reshape(4, 3), "coords": np.arange(8, dtype=np.int64).reshape(4, 2),
        "region_id": np.zeros(4, np.int32), "patch_key": np.array(list("abcd"), dtype=object),
    }
    attrs = {"slide_id": "s", "n": 4}
    on_disk = tmp_path / "disk.h5"
    with h5py.File(on_disk, "w", libver=("earliest", "v110")) as f:  # what write() did before images
        for name in ("features", "coords", "region_id"):
            f.create_dataset(name, data=arrays[name], track_times=False)
        f.create_dataset("patch_key", data=arrays["patch_key"], dtype=h5py.string_dtype(), track_times=False)
        for key in sorted(attrs):
            f.attrs[key] = attrs[key]
        f.flush()
        f.attrs["complete"] = np.bool_(True)
    assert Hdf5Store().image(arrays, attrs) == on_disk.read_bytes()


@pytest.mark.parametrize("format", ["hdf5", "zarr"])
def test_a_real_enospc_is_one_storage_error_and_leaves_no_temporary(
    tmp_path: Path, format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tmpfs(tmp_path / "disk", "600k") as disk:
        done = write_slide(disk, make_slide("s0", **provenance(KEY)), format=format)
        before = read_slide(done).features.tobytes()
        monkeypatch.setattr(cache_files, "check_free_space", lambda *a, **k: None)  # let os.write meet ENOSPC
        big = make_slide("s1", n=200, d=1280, **provenance(KEY))
        with pytest.raises(StorageError) as caught:
            write_slide(disk, big, format=format, dtype="float32")  # 1 MB into 600 kB
        message = str(caught.value)
        assert "no space left on the device (ENOSPC)" in message and "(writing slide 's1')" in message
        assert sorted(p.name for p in disk.iterdir() if not p.name.startswith(".locks")) == [done.name]
        assert read_slide(done).features.tobytes() == before


def test_the_free_space_check_refuses_before_writing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "600k") as disk:
        pattern = r"cannot write slide 's1' to .*: no space left on the device \(ENOSPC\): it needs 1\.0 MiB, .* free"
        with pytest.raises(StorageError, match=pattern):
            write_slide(disk, make_slide("s1", n=200, d=1280, **provenance(KEY)), dtype="float32")
        assert [p.name for p in disk.iterdir()] == [".locks"]


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (errno.ENOSPC, "no space left on the device (ENOSPC); free space there or write to another folder"),
        (errno.EROFS, "the filesystem is read-only (EROFS); remount it read-write or write to another folder"),
        (errno.EACCES, "permission denied (EACCES); make it writable for this user or write to another folder"),
        (errno.ENOENT, "it does not exist (ENOENT): removed, moved or unmounted while in use; re-run when it is back"),
    ],
)
def test_describe_os_error_names_the_path_the_errno_and_the_fix(code: int, text: str) -> None:
    err = OSError(code, os.strerror(code), "/data/cache/1.h5")
    assert describe_os_error(err) == f"cannot write /data/cache/1.h5: {text}"
    assert describe_os_error(err, "/data", action="read").startswith("cannot read /data: ")
    assert "Invalid cross-device link (EXDEV)" in describe_os_error(OSError(errno.EXDEV, os.strerror(errno.EXDEV)))
