"""OS-level locks in a cache directory and the clean-up of temporaries left by dead writers.

All locks are ``flock``-style locks held on files under ``<cache_dir>/.locks/`` (via the
``filelock`` package). The kernel drops them when the holding process exits for any reason,
``kill -9`` included, so a crash never leaves a slide locked. Lock files themselves stay on disk
(unlinking a lock file breaks mutual exclusion); they are empty and harmless.

- ``.locks/<slide_id>.lock``: :func:`slide_lock`, held by the process that extracts the slide.
- ``.locks/write-<pid>-<token>.lock``: :func:`writer_lock`, held by :func:`~balnmp_cache.cache.write_slide`
  while its temporary ``.tmp-<pid>-<token>-<slide_id>.*`` exists. :func:`clean_stale_temporaries`
  removes a temporary only when it can take this lock, i.e. when its writer is gone.
- ``.locks/manifest.lock``: serialises ``manifest.csv`` updates.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from balnmp_cache.cache.files import remove_path
from balnmp_cache.cache.naming import AUX_TEMP_RE, LOCKS_DIR, check_slide_id, parse_temp_name
from balnmp_cache.errors import CacheError

__all__ = [
    "clean_stale_temporaries",
    "file_lock",
    "manifest_lock_path",
    "slide_lock",
    "slide_lock_path",
    "try_lock",
    "writer_alive",
    "writer_lock",
    "writer_lock_path",
]

log = logging.getLogger(__name__)

# A writer-lock file without a temporary is removed only when older than this: a writer creates its
# lock file a moment before it takes the lock and creates the temporary.
_ORPHAN_LOCK_AGE_S = 60.0


@cache
def _lock_kwargs() -> dict[str, Any]:
    import filelock

    params = inspect.signature(filelock.FileLock.__init__).parameters
    kwargs: dict[str, Any] = {}
    if "fallback_to_soft" in params:  # a soft (PID-file) lock would survive kill -9: never fall back to one
        kwargs["fallback_to_soft"] = False
    if "thread_local" in params:  # extract claims a slide on one thread and its writer thread releases it
        kwargs["thread_local"] = False
    return kwargs


def _lock_path(cache_dir: Path, name: str) -> Path:
    directory = Path(cache_dir) / LOCKS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


def try_lock(path: Path) -> Any | None:
    """Take the OS lock on ``path`` without waiting; the held lock object, or ``None`` if it is taken."""
    import filelock

    lock = filelock.FileLock(str(path), **_lock_kwargs())
    try:
        lock.acquire(blocking=False)
    except filelock.Timeout:
        return None
    return lock


@contextmanager
def file_lock(path: Path, *, timeout_s: float = 120.0) -> Iterator[None]:
    """Hold the OS lock on ``path``, waiting up to ``timeout_s`` seconds.

    Raises:
        CacheError: the lock was not free within ``timeout_s``.
    """
    import filelock

    lock = filelock.FileLock(str(path), timeout=timeout_s, **_lock_kwargs())
    try:
        lock.acquire()
    except filelock.Timeout as err:
        raise CacheError(
            f"lock {path} was still held by another process after {timeout_s:.0f} s; "
            "wait for the other extract run to finish"
        ) from err
    try:
        yield
    finally:
        lock.release()


def slide_lock_path(cache_dir: Path, slide_id: str) -> Path:
    """The lock file that claims ``slide_id`` in ``cache_dir`` (take it with :func:`try_lock`)."""
    return _lock_path(cache_dir, f"{check_slide_id(slide_id)}.lock")


@contextmanager
def slide_lock(cache_dir: Path, slide_id: str) -> Iterator[bool]:
    """Try to claim ``slide_id`` in ``cache_dir`` for this process, without waiting.

    Yields ``True`` when this process holds the slide until the ``with`` block ends, ``False`` when
    another process (or another ``slide_lock`` in this process) holds it. The lock is an OS lock
    that the kernel releases if the holder dies, ``kill -9`` included.

    Raises:
        CacheError: ``slide_id`` cannot name a file.
    """
    lock = try_lock(slide_lock_path(cache_dir, slide_id))
    try:
        yield lock is not None
    finally:
        if lock is not None:
            lock.release()


def manifest_lock_path(cache_dir: Path) -> Path:
    """The lock file that serialises ``manifest.csv`` updates (the cache folder is created if missing)."""
    return _lock_path(cache_dir, "manifest.lock")


def _writer_lock_name(pid: int, token: str) -> str:
    return f"write-{pid}-{token}.lock"


def writer_lock_path(cache_dir: Path, pid: int, token: str) -> Path:
    """The lock file that guards the temporary with this ``pid`` and ``token``."""
    return _lock_path(cache_dir, _writer_lock_name(pid, token))


@contextmanager
def writer_lock(cache_dir: Path, pid: int, token: str) -> Iterator[None]:
    """Hold the writer lock of one temporary for the duration of a write; remove its file afterwards."""
    path = writer_lock_path(cache_dir, pid, token)
    lock = try_lock(path)
    if lock is None:  # the token is random: only a bug gets here
        raise CacheError(f"writer lock {path} is already held; retry the write")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # nobody else uses this random name; unlink before unlocking
        lock.release()


def writer_alive(cache_dir: Path, pid: int, token: str) -> bool:
    """Whether the writer of temporary ``(pid, token)`` still holds its lock; creates nothing (for checkers)."""
    lock_file = Path(cache_dir) / LOCKS_DIR / _writer_lock_name(pid, token)
    if not lock_file.exists():
        return False
    lock = try_lock(lock_file)
    if lock is None:
        return True
    lock.release()
    return False


def clean_stale_temporaries(cache_dir: Path) -> list[Path]:
    """Remove temporaries left in ``cache_dir`` by writers that died (e.g. after ``kill -9``).

    A temporary ``.tmp-<pid>-<token>-<slide>.*`` (or a replaced store ``.old-...``) is removed only
    if its writer lock ``.locks/write-<pid>-<token>.lock`` is free, so a live writer's temporary is
    never touched, whichever process or host it runs on, and a reused PID does not matter.
    Temporaries of ``manifest.csv``/``cache.json`` rewrites are removed when older than a minute.

    Returns:
        The paths removed, sorted.
    """
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    removed: list[Path] = []
    live: set[tuple[int, str]] = set()
    now = time.time()
    for entry in sorted(cache_dir.iterdir()):
        parsed = parse_temp_name(entry.name)
        if parsed is None:
            if AUX_TEMP_RE.match(entry.name) and _age_s(entry, now) > _ORPHAN_LOCK_AGE_S:
                entry.unlink(missing_ok=True)
                removed.append(entry)
            continue
        live.add((parsed.pid, parsed.token))
        lock_file = writer_lock_path(cache_dir, parsed.pid, parsed.token)
        lock = try_lock(lock_file)
        if lock is None:
            log.debug("keeping %s: its writer (pid %d) is still running", entry.name, parsed.pid)
            continue
        try:
            if entry.exists() or entry.is_symlink():
                remove_path(entry)
                removed.append(entry)
                log.info("removed %s left by a writer that stopped (pid %d)", entry, parsed.pid)
        finally:
            lock_file.unlink(missing_ok=True)
            lock.release()
    _clean_orphan_writer_locks(cache_dir, live)
    return removed


def _age_s(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _clean_orphan_writer_locks(cache_dir: Path, seen: set[tuple[int, str]]) -> None:
    """Remove old, free ``write-*.lock`` files whose temporary is gone (the writer died after renaming)."""
    locks = cache_dir / LOCKS_DIR
    if not locks.is_dir():
        return
    now = time.time()
    for path in locks.glob("write-*-*.lock"):
        pid_text, _, token = path.stem.removeprefix("write-").partition("-")
        if not pid_text.isdigit() or (int(pid_text), token) in seen:
            continue
        if _age_s(path, now) < _ORPHAN_LOCK_AGE_S:
            continue
        lock = try_lock(path)
        if lock is not None:
            path.unlink(missing_ok=True)
            lock.release()

