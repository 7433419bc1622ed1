"""Writing files so that a reader never sees half of one: a temporary beside the target, then a rename.

Every output of the package (run directories, reports, manifests, configurations, demo files) is
written through these helpers. The temporary is a hidden name beside the target that is unique per
process and call (``.<name>.<pid>.<token>.tmp``), so two writers never share one, and it is removed
when the write fails, so a full disk or a crash of the writer leaves the old file and no debris.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "temp_name"]


def temp_name(target: Path) -> Path:
    """A fresh hidden temporary beside ``target``: ``.<name>.<pid>.<token>.tmp``."""
    target = Path(target)
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(target: Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is renamed over ``target``, on failure removed.

    Args:
        target: the final file; its folder is created when missing.
        durable: fsync the file and its folder (for data that must survive a power cut).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(target)
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, target)
        if durable:
            fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(target: Path, data: bytes, *, durable: bool = False) -> Path:
    """Write ``data`` to ``target`` atomically and return ``target``."""
    with atomic_path(target, durable=durable) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: Path, text: str, *, durable: bool = False) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``target`` atomically and return ``target``."""
    with atomic_path(target, durable=durable) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return Path(target)
