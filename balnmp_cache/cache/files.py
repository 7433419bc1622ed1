"""Filesystem steps shared by the slide stores: write a finished file (or store) image, fsync, remove.

Both stores build a slide in memory first (HDF5's core driver, a Zarr memory store) and hand the
bytes to :func:`write_tree`, which checks the free space, writes with plain ``os.write`` and
fsyncs. A full disk, a read-only filesystem or a vanished folder therefore fail in one place, as
a :class:`~balnmp_cache.errors.StorageError` naming the path, and never inside HDF5: HDF5 that hits
ENOSPC while flushing leaves its library state broken and crashed the interpreter at exit.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from balnmp_cache.errors import StorageError
from balnmp_cache.fsio import describe_os_error, fsync_dir

__all__ = ["FREE_SPACE_RESERVE", "check_free_space", "fsync_file", "remove_path", "write_tree"]

FREE_SPACE_RESERVE = 256 * 1024
"""Bytes a slide write leaves free, so that the manifest row and the log lines after it still fit."""


def fsync_file(path: Path) -> None:
    """Flush ``path``'s data to disk (``os.fsync`` on a read-only descriptor)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_path(path: Path, *, ignore_errors: bool = False) -> None:
    """Remove a file, a link or a directory tree (a Zarr store); a missing ``path`` is fine."""
    path = Path(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=ignore_errors)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        if not ignore_errors:
            raise


def _fmt_bytes(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def check_free_space(directory: Path, needed: int, *, what: str) -> None:
    """Refuse a write of ``needed`` bytes into ``directory`` that would leave less than :data:`FREE_SPACE_RESERVE`.

    Raises:
        StorageError: not enough space (``what`` names the write in the message). A filesystem that
            cannot tell its free space is not refused here.
    """
    try:
        stat = os.statvfs(directory)
    except (OSError, AttributeError):  # no statvfs (Windows) or a filesystem that does not answer: just write
        return
    free = stat.f_bavail * stat.f_frsize
    if free >= needed + FREE_SPACE_RESERVE:
        return
    raise StorageError(
        f"cannot write {what} to {directory}: no space left on the device (ENOSPC): it needs {_fmt_bytes(needed)}, "
        f"{_fmt_bytes(free)} are free and {_fmt_bytes(FREE_SPACE_RESERVE)} are kept free for the manifest and logs; "
        "free space there or write to another folder, then re-run (finished slides are kept)"
    )


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_tree(path: Path, files: Mapping[str, bytes], *, what: str) -> None:
    """Create ``path`` from an in-memory image and fsync it.

    Args:
        path: the file to create (``files`` is ``{"": bytes}``) or the directory to create (keys are
            ``/``-separated paths relative to it); must not exist.
        files: relative path -> content.
        what: names the write in error messages (e.g. ``"slide '1'"``).

    Raises:
        StorageError: the space check failed, or the filesystem refused a write (full, read-only,
            no permission, the folder gone); the message names the path and the errno. What was
            written of ``path`` is left for the caller to remove.
    """
    path = Path(path)
    block = 4096
    needed = sum(-(-len(data) // block) * block for data in files.values()) + block * len(files)
    check_free_space(path.parent, needed, what=what)
    current = path
    try:
        if set(files) == {""}:
            _write_file(path, files[""])
            return
        path.mkdir()  # not parents: a vanished cache folder must fail here, not be made again
        folders = {path} | {folder for name in files for folder in (path / name).parents if path in folder.parents}
        for folder in sorted(folders, key=lambda p: len(p.parts)):
            current = folder
            folder.mkdir(exist_ok=True)
        for name in sorted(files):
            current = path / name
            _write_file(current, files[name])
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            current = folder
            fsync_dir(folder)
    except OSError as err:
        if err.errno == errno.ENOENT and not path.parent.is_dir():
            current = path.parent
        raise StorageError(f"{describe_os_error(err, current)} (writing {what})") from err
