"""An append-only journal beside ``manifest.csv``: O(1) updates per slide, safe under kill -9 and several processes.

Each record is one JSON line in ``<cache_dir>/.journal.jsonl``: a manifest row (``"row"``), an index
entry (``"file"``, see :mod:`balnmp_cache.cache.index`), or both, plus a random ``"id"``. Appending a
record costs one locked ``write`` (and an ``fsync``) whatever the size of the cache; the manifest is
rewritten only when the journal is *compacted* (:func:`consume`: at the start and the end of an
extract run, and by :func:`~balnmp_cache.cache.manifest.update_manifest`).

Why it is safe:

* every append and every compaction holds ``.locks/manifest.lock`` (an OS lock the kernel drops
  when its holder dies), so records never interleave and a compaction never loses an append;
* a process killed in the middle of an append leaves at most a last line without its newline; the
  next append (under the lock) cuts it off, and readers ignore it, so one torn record is all a
  crash can cost, and only the record being written when it happened;
* a compaction replaces ``manifest.csv`` (and ``.index.json``) atomically *before* it removes the
  journal; a crash in between leaves records that are already folded in, and folding them again
  changes nothing (one row per slide, the latest wins, and they are older than anything after them);
* readers take no lock (a read-only cache stays readable): :func:`snapshot` reads the journal, then
  the compacted files, then the journal again, and retries when a compaction came in between.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from balnmp_cache.cache.locks import file_lock, manifest_lock_path
from balnmp_cache.cache.naming import JOURNAL

__all__ = ["append_records", "consume", "journal_path", "parse_records", "snapshot"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_SNAPSHOT_ATTEMPTS = 5
_TAIL_BYTES = 1 << 16


def journal_path(cache_dir: Path) -> Path:
    """``<cache_dir>/.journal.jsonl``."""
    return Path(cache_dir) / JOURNAL


def _encode(record: Mapping[str, Any]) -> bytes:
    data = {**record, "id": secrets.token_hex(8)}
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def _drop_torn_tail(fd: int) -> None:
    """Cut a last line without its newline (a writer killed mid-append); the caller holds the lock."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = max(0, size - _TAIL_BYTES)
    while True:
        tail = os.pread(fd, size - start, start)
        cut = tail.rfind(b"\n")
        if cut >= 0 or start == 0:
            break
        start = max(0, start - _TAIL_BYTES)
    keep = start + cut + 1 if cut >= 0 else 0
    log.warning("dropped a torn last record of %d bytes from the manifest journal", size - keep)
    os.ftruncate(fd, keep)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def append_records(
    cache_dir: Path, records: Sequence[Mapping[str, Any]], *, durable: bool = True, timeout_s: float = 120.0
) -> None:
    """Append ``records`` (JSON-able mappings) to the journal in one write, under the manifest lock.

    Raises:
        CacheError: the lock was not free within ``timeout_s``.
        OSError: the filesystem refused the write (the caller names it).
    """
    if not records:
        return
    data = b"".join(_encode(record) for record in records)
    with file_lock(manifest_lock_path(cache_dir), timeout_s=timeout_s):
        fd = os.open(journal_path(cache_dir), os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _drop_torn_tail(fd)
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)


def parse_records(data: bytes) -> list[dict[str, Any]]:
    """The complete records of a journal's bytes; a torn last line and unreadable lines are left out."""
    records = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):  # the last piece has no newline: torn or empty
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("manifest journal line %d is unreadable; it is ignored", number)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def snapshot(cache_dir: Path, read_base: Callable[[], T]) -> tuple[T, list[dict[str, Any]]]:
    """``(read_base(), records)`` consistent with each other, without taking the lock.

    ``read_base`` reads the compacted files. When the journal is not an extension of what it was
    before ``read_base`` ran, a compaction came in between and the reads are repeated.
    """
    path = journal_path(cache_dir)
    for _attempt in range(_SNAPSHOT_ATTEMPTS):
        before = _read_bytes(path)
        base = read_base()
        after = _read_bytes(path)
        if after.startswith(before):
            return base, parse_records(after)
    return base, parse_records(after)


def consume(cache_dir: Path, fold: Callable[[list[dict[str, Any]]], None], *, timeout_s: float = 120.0) -> None:
    """Compact: under the manifest lock, ``fold(records)`` writes them into the compacted files; then
    the journal is removed. ``fold`` is called with ``[]`` when there is no journal (callers that
    add rows of their own still write them).

    Raises:
        CacheError: the lock was not free within ``timeout_s``.
        OSError: the filesystem refused a write.
    """
    path = journal_path(cache_dir)
    with file_lock(manifest_lock_path(cache_dir), timeout_s=timeout_s):
        data = _read_bytes(path)
        fold(parse_records(data))
        if data:
            path.unlink(missing_ok=True)
