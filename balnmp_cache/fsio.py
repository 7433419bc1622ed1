"""Writing files so that a reader never sees half of one: a temporary beside the target, then a rename.

Every output of the package (run directories, reports, manifests, configurations, demo files) is
written through these helpers. The temporary is a hidden name beside the target that is unique per
process and call (``.<name>.<pid>.<token>.tmp``), so two writers never share one, and it is removed
when the write fails, so a full disk or a crash of the writer leaves the old file and no debris.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "STORAGE_ERRNOS",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "describe_os_error",
    "fsync_dir",
    "temp_name",
]

STORAGE_ERRNOS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device (ENOSPC)", "free space there or write to another folder"),
    errno.EDQUOT: ("the disk quota is exceeded (EDQUOT)", "free space there or write to another folder"),
    errno.EROFS: ("the filesystem is read-only (EROFS)", "remount it read-write or write to another folder"),
    errno.EACCES: ("permission denied (EACCES)", "make it writable for this user or write to another folder"),
    errno.EPERM: ("operation not permitted (EPERM)", "make it writable for this user or write to another folder"),
    errno.ENOENT: ("it does not exist (ENOENT): removed, moved or unmounted while in use", "re-run when it is back"),
    errno.EIO: ("input/output error (EIO): the disk or network share failed", "check it, then re-run"),
}
"""errno -> (what it means, what to do about a failed write): a full, read-only, forbidden or vanished output."""


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


def describe_os_error(err: OSError, path: Path | str | None = None, *, action: str = "write") -> str:
    """One line for a failed filesystem call: the path, what the errno means and, for writes, what to do.

    Args:
        err: the error raised by ``open``, ``os.write``, ``mkdir``, ``rename``, ...
        path: the path the call was about; ``err.filename`` when not given.
        action: the verb of the message (``write``, ``read``, ``create``...); the fix is added for ``write``.

    Returns:
        e.g. ``"cannot write /data/cache/1.h5: no space left on the device (ENOSPC); free space
        there or write to another folder"``; an errno not in :data:`STORAGE_ERRNOS` is named with
        its ``strerror``.
    """
    where = path if path is not None else err.filename
    target = f" {where}" if where is not None else ""
    code = err.errno
    if code in STORAGE_ERRNOS:
        meaning, fix = STORAGE_ERRNOS[code]
        meaning += f"; {fix}" if action == "write" else ""
    else:
        name = errno.errorcode.get(code, str(code)) if code is not None else type(err).__name__
        meaning = f"{err.strerror or err} ({name})"
    return f"cannot {action}{target}: {meaning}".replace("\n", " ")
