"""The completion index: what each complete slide file of a cache is, so a re-run need not open it.

An entry (:class:`SlideFile`) is written when extract writes a slide file, or when its skip check has
read a file through and found it intact. It records the file's *state* — size, ``mtime_ns``, inode
and ``ctime_ns`` (for a Zarr store, those of every file in it) — with the facts the skip check needs
from the header: the cache key, ``n_patches``, ``source_fingerprint``, ``source_path`` and the patient,
plus the *source state* (sizes, mtimes and inodes of the slide's input files) under which the
fingerprint was computed.

A later run trusts an entry only while the file's state is unchanged, so deciding that a finished
slide is complete costs a ``stat`` or two instead of opening the file, re-reading its arrays against
their CRC-32 and reading the source's first and last MiB. The trade-off: damage that changes a file's
bytes but none of size, mtime, inode or ctime (bit rot under the filesystem, a tool that writes in
place and restores the times) is not noticed by the skip check; ``verify`` and ``load_cache`` still
check every CRC. Any other change — a rewrite, a truncation, a ``touch``, a copy of the cache to
another disk — makes the state differ, and the skip check reads the file through again and records
a new entry.

Entries live in the journal (:mod:`balnmp_cache.cache.journal`) until a compaction folds them into
``.index.json``. The index is a cache of facts the files themselves hold: an entry that does not
match its file is ignored, an unreadable index is an empty one, and deleting it only costs one slow
re-run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from balnmp_cache.cache.naming import INDEX_JSON
from balnmp_cache.fsio import atomic_write_text

__all__ = ["INDEX_VERSION", "SlideFile", "entries_of", "file_state", "read_index", "write_index"]

log = logging.getLogger(__name__)

INDEX_VERSION = 1


@dataclass(frozen=True)
class SlideFile:
    """One complete slide file as it was when it was written or last read through intact.

    Attributes:
        slide_id: the slide.
        state: :func:`file_state` of the file then.
        cache_key: the file's ``cache_key`` attribute.
        n_patches: its ``n_patches``.
        fingerprint: its ``source_fingerprint`` ('' if it has none).
        source_path: its ``source_path``.
        patient_id: its ``patient_id``.
        source_state: the source's state when ``fingerprint`` was last confirmed ('' if never).
    """

    slide_id: str
    state: str
    cache_key: str
    n_patches: int
    fingerprint: str
    source_path: str
    patient_id: str = ""
    source_state: str = ""

    def record(self) -> dict[str, Any]:
        """The entry as a JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> SlideFile | None:
        """The entry of a dict from :meth:`record`; ``None`` when it is not one."""
        try:
            values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
            entry = cls(**values)
        except (TypeError, KeyError):
            return None
        if not isinstance(entry.slide_id, str) or not isinstance(entry.n_patches, int):
            return None
        return entry


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"


def file_state(path: Path) -> str | None:
    """Size, mtime, inode and ctime of a file; for a directory (a Zarr store) a digest of those of
    every file under it and their relative paths. ``None`` when ``path`` does not exist."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not os.path.isdir(path):
        return _stat_key(st)
    digest = hashlib.sha256(_stat_key(st).encode())
    stack = [Path(path)]
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except FileNotFoundError:
            return None
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(Path(entry.path))
                continue
            try:
                key = _stat_key(entry.stat(follow_symlinks=False))
            except FileNotFoundError:
                return None
            digest.update(f"{os.path.relpath(entry.path, path)}|{key}\n".encode())
    return "dir:" + digest.hexdigest()[:32]


def entries_of(records: Iterable[Mapping[str, Any]]) -> dict[str, SlideFile]:
    """Slide id -> the latest index entry among journal ``records`` (their ``"file"`` parts)."""
    out: dict[str, SlideFile] = {}
    for record in records:
        data = record.get("file")
        if isinstance(data, Mapping):
            entry = SlideFile.from_record(data)
            if entry is not None:
                out[entry.slide_id] = entry
    return out


def read_index(cache_dir: Path) -> dict[str, SlideFile]:
    """The compacted index of ``cache_dir`` (``{}`` when missing or unreadable: it is only a cache)."""
    path = Path(cache_dir) / INDEX_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        log.warning("%s is unreadable (%s); the next run checks the slide files themselves", path, err)
        return {}
    if not isinstance(data, dict) or data.get("version") != INDEX_VERSION or not isinstance(data.get("slides"), dict):
        return {}
    return entries_of({"file": value} for value in data["slides"].values())


def write_index(cache_dir: Path, entries: Mapping[str, SlideFile]) -> None:
    """Replace ``.index.json`` atomically with ``entries`` (sorted by slide id)."""
    slides = {sid: entries[sid].record() for sid in sorted(entries)}
    text = json.dumps({"version": INDEX_VERSION, "slides": slides}, sort_keys=True, ensure_ascii=False)
    atomic_write_text(Path(cache_dir) / INDEX_JSON, text + "\n", durable=True)
