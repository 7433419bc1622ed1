"""Output folders built beside their target and swapped in when complete, one writer at a time.

``train`` (a run directory) and ``report`` (a report folder) write a folder ``TARGET`` like this::

    PARENT/.TARGET.lock                 OS lock (flock): one writer per TARGET; the kernel drops it if the writer dies
    PARENT/.TARGET.tmp-<pid>-<token>/   the new folder while it is built ("staging")
    PARENT/.TARGET.old-<pid>-<token>/   the folder it replaces, for a moment during a swap without RENAME_EXCHANGE
    PARENT/TARGET/                      the complete folder
    PARENT/TARGET.log                   the CLI's log of the command (:func:`log_path`)

The writer takes the lock (a second writer gets :class:`OutputBusyError` at once, or waits with
``wait=True``), builds everything in its staging folder and swaps it in with one rename: on Linux an
atomic ``renameat2(RENAME_EXCHANGE)``, so ``TARGET`` always holds either the old complete folder or
the new one, then the old one (now at the staging name) is removed. Where the exchange is missing,
the old folder is renamed to ``.TARGET.old-…`` first; a writer killed between the two renames leaves
``TARGET`` missing, and the next writer (or reader, :func:`recover`) finishes that swap from the
staging folder. Leftovers of dead writers are removed by the next writer, which holds the lock, so
no live writer's files are ever touched. The lock file stays (unlinking it would break the lock).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from balnmp_cache.errors import BalnmpError
from balnmp_cache.fsio import describe_os_error, fsync_dir

__all__ = [
    "OutputBusyError", "OutputWriteError", "Staged", "lock_path", "log_path", "naming_errors", "recover", "staged_dir",
]

log = logging.getLogger(__name__)

_AT_FDCWD = -100
_WAIT_POLL_S = 0.5
_RENAME_EXCHANGE = 2
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}


class OutputBusyError(BalnmpError):
    """Another process is writing the same output folder."""


class OutputWriteError(BalnmpError):
    """The filesystem refused a write into an output folder (full, read-only, no permission, gone)."""


def _target(path: Path) -> Path:
    target = Path(path).absolute()
    if not target.name or target.name in (".", ".."):
        raise OutputWriteError(f"{path} cannot be an output folder: name a folder, e.g. out/run")
    return target


def lock_path(target: Path) -> Path:
    """The lock file of ``target``: ``.TARGET.lock`` beside it."""
    target = _target(target)
    return target.with_name(f".{target.name}.lock")


def log_path(target: Path) -> Path:
    """Where the CLI logs the command that writes ``target``: ``TARGET.log`` beside it.

    Beside, not inside: the folder is swapped as a whole, and a failed or refused attempt must not
    touch a complete one. A second writer is refused before it logs a line, so logs never interleave.
    """
    target = _target(target)
    return target.with_name(f"{target.name}.log")


def _leftover_re(target: Path) -> re.Pattern[str]:
    return re.compile(rf"^\.{re.escape(target.name)}\.(tmp|old)-(\d+)-([0-9a-f]+)$")


def _leftovers(target: Path) -> list[tuple[str, int, str, Path]]:
    """``(kind, pid, token, path)`` of every staging (``tmp``) and replaced (``old``) folder of ``target``."""
    pattern = _leftover_re(target)
    found = []
    try:
        entries = sorted(target.parent.iterdir())
    except FileNotFoundError:
        return []
    for entry in entries:
        match = pattern.match(entry.name)
        if match:
            found.append((match.group(1), int(match.group(2)), match.group(3), entry))
    return found


def _remove(path: Path, *, quiet: bool = False) -> None:
    """Remove a folder; ``quiet``: a failure (a read-only disk) is logged, the next writer retries."""
    from balnmp_cache.cache.files import remove_path

    try:
        remove_path(path)
    except OSError as err:
        if not quiet:
            raise
        log.warning("%s", describe_os_error(err, path, action="remove"))


def _settle(target: Path) -> None:
    """Finish a swap a dead writer began, then remove every leftover (the caller holds the lock)."""
    leftovers = _leftovers(target)
    if not target.exists():
        olds = sorted((e for e in leftovers if e[0] == "old"), key=lambda e: e[3].stat().st_mtime, reverse=True)
        for _, pid, token, old in olds[:1]:
            staging = target.with_name(f".{target.name}.tmp-{pid}-{token}")
            source = staging if staging.is_dir() else old  # the swap only starts once the new folder is complete
            os.rename(source, target)
            fsync_dir(target.parent)
            log.warning("%s: finished a swap interrupted by the end of pid %d (%s)", target, pid,
                        "the new folder" if source == staging else "the previous folder kept")
    for _, pid, _, path in leftovers:
        if path.exists():
            _remove(path)
            log.info("removed %s, left by a writer that stopped (pid %d)", path, pid)


def _writer_pid(target: Path) -> int | None:
    """The pid in the newest staging folder's name: the writer that holds the lock."""
    stagings = [e for e in _leftovers(target) if e[0] == "tmp"]
    if not stagings:
        return None
    try:
        newest = max(stagings, key=lambda e: e[3].stat().st_mtime)
    except FileNotFoundError:
        return None
    return newest[1]


def _take_lock(target: Path, *, writer: str, wait: bool) -> Any:
    from balnmp_cache.cache.locks import try_lock

    target.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(target)
    lock = try_lock(path)
    if lock is not None:
        return lock
    pid = _writer_pid(target)
    if not wait:
        who = f"pid {pid}" if pid is not None else "pid unknown"
        raise OutputBusyError(f"busy: another {writer} is writing {target} ({who}); wait for it to finish, "
                              "or write to another --out")
    log.info("%s is being written by another %s (pid %s); waiting for it", target, writer, pid or "unknown")
    while (lock := try_lock(path)) is None:
        time.sleep(_WAIT_POLL_S)
    return lock


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2``); ``False`` where this system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(b))


@dataclass
class Staged:
    """A folder being built: write into ``staging``, then :meth:`commit` swaps it in as ``target``.

    Attributes:
        target: the final folder (absolute).
        staging: the temporary sibling ``.TARGET.tmp-<pid>-<token>/`` (exists).
        committed: whether :meth:`commit` ran.
    """

    target: Path
    staging: Path
    committed: bool = False

    def public(self, path: Path | str) -> Path:
        """``path`` with the staging folder replaced by the target (for messages and results)."""
        path = Path(path)
        try:
            return self.target / path.relative_to(self.staging)
        except ValueError:
            return path

    def commit(self) -> Path:
        """Swap the complete staging folder in as ``target``; the folder it replaces is removed."""
        fsync_dir(self.staging)
        target = self.target
        if not target.exists() and not target.is_symlink():
            os.rename(self.staging, target)
        elif _exchange(self.staging, target):
            _remove(self.staging)  # it now holds the replaced folder
        else:
            old = self.staging.with_name(self.staging.name.replace(".tmp-", ".old-", 1))
            os.rename(target, old)
            os.rename(self.staging, target)
            _remove(old)
        fsync_dir(target.parent)
        self.committed = True
        return target


@contextmanager
def staged_dir(
    target: Path, *, writer: str, check: Callable[[Path], None] | None = None, wait: bool = False
) -> Iterator[Staged]:
    """Hold the lock of ``target`` and a fresh staging folder for it while the block runs.

    On entry: the lock is taken, a swap a dead writer began is finished, leftovers are removed, then
    ``check(target)`` may refuse the target (it raises). On exit the staging folder is removed unless
    :meth:`Staged.commit` was called; an ``OSError`` about a path of the staging folder becomes one
    :class:`OutputWriteError` line naming the path it was going to have.

    Args:
        target: the output folder.
        writer: what writes it (``"train"``, ``"report"``), for messages.
        check: called with ``target`` under the lock, before the staging folder is made.
        wait: wait for another writer instead of raising :class:`OutputBusyError`.

    Raises:
        OutputBusyError: another process holds the lock (and ``wait`` is false).
        OutputWriteError: the lock, the clean-up or the staging folder cannot be written.
    """
    target = _target(target)
    try:
        lock = _take_lock(target, writer=writer, wait=wait)
    except OSError as err:
        raise OutputWriteError(describe_os_error(err)) from err
    try:
        staged = _prepare(target, check)
        try:
            yield staged
        except OSError as err:
            mapped = _write_error(staged, err)
            if mapped is err:
                raise
            raise mapped from err
        finally:
            if not staged.committed:
                _remove(staged.staging, quiet=True)
    finally:
        lock.release()


def _prepare(target: Path, check: Callable[[Path], None] | None) -> Staged:
    """Settle leftovers, run ``check`` and make a staging folder (the caller holds the lock)."""
    try:
        _settle(target)
        if check is not None:
            check(target)
        staging = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        staging.mkdir()
    except OSError as err:
        raise OutputWriteError(describe_os_error(err)) from err
    return Staged(target, staging)


def _write_error(staged: Staged, err: OSError) -> OSError | OutputWriteError:
    """One :class:`OutputWriteError` line when ``err`` is about the staging folder, else ``err`` itself.

    An error without a file name (a failed ``write`` of an open file) is taken to be about the folder.
    """
    name = err.filename
    if name is None:
        return OutputWriteError(describe_os_error(err, staged.target))
    if staged.public(name) == Path(name):
        return err
    return OutputWriteError(describe_os_error(err, staged.public(name)))


@contextmanager
def naming_errors(folder: Path) -> Iterator[None]:
    """Give an ``OSError`` raised without a file name in the block ``folder`` as its file name.

    A failed ``write`` of an open file (a full disk) says nothing of where; the message needs a path.
    """
    try:
        yield
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        raise OSError(err.errno, err.strerror, str(folder)) from err


def recover(target: Path) -> None:
    """Finish a swap that a killed writer left half done, if ``target`` is missing and nobody writes it.

    Readers (``predict``, ``report``) call this so that a run is found even right after such a crash.
    """
    from balnmp_cache.cache.locks import try_lock

    target = _target(target)
    if target.exists() or not any(kind == "old" for kind, *_ in _leftovers(target)):
        return
    lock = try_lock(lock_path(target))
    if lock is None:
        return
    try:
        _settle(target)
    finally:
        lock.release()
