"""Filesystem steps shared by the slide stores: make a file durable, remove a file or a whole store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["fsync_file", "remove_path"]


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
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=ignore_errors)
    else:
        path.unlink(missing_ok=True)
