"""A cheap fingerprint of what a slide's features were computed from.

A complete cache file is reused only when its cache key (the settings) *and* this fingerprint (the
input) match, so re-running into the same cache with a different image under the same slide id —
another folder, the pyramidal form instead of the JPEG, pre-cut patches instead of the slide, or a
corrected annotation — recomputes the slide instead of silently returning stale features.

Hashing whole slides would make re-running a finished 1,000-slide cache take minutes, so a slide
file contributes its size and its first and last MiB; annotation files are hashed whole (small).

:func:`source_state` is cheaper still: sizes, mtimes and inodes of the same files, ``stat`` calls
only. The completion index (:mod:`balnmp_cache.cache.index`) records it beside the fingerprint, so a
re-run reads a slide's bytes again only when one of its input files changed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from balnmp_cache.slides import SlideJob

__all__ = ["input_bytes", "source_fingerprint", "source_state"]

_EDGE_BYTES = 1 << 20


def _file_digest(h: hashlib._Hash, path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with path.open("rb") as fh:
        h.update(fh.read(_EDGE_BYTES))
        if size > 2 * _EDGE_BYTES:
            fh.seek(size - _EDGE_BYTES)
            h.update(fh.read(_EDGE_BYTES))


def source_fingerprint(job: SlideJob) -> str:
    """16 hex digits over the job's kind, slide file(s), annotation and MPP override."""
    h = hashlib.sha256()
    h.update(f"{job.kind}|mpp={job.mpp}".encode())
    if job.kind == "patches":
        for path in job.patch_files:
            h.update(f"{path.name}:{path.stat().st_size}".encode())
    elif job.path.is_dir():  # a DICOM folder
        for path in sorted(job.path.glob("*.dcm")):
            _file_digest(h, path)
    else:
        _file_digest(h, job.path)
    if job.annotation is not None:
        h.update(b"annotation")
        h.update(job.annotation.read_bytes())
    return h.hexdigest()[:16]


def _input_files(job: SlideJob) -> Iterator[Path]:
    if job.kind == "patches":
        yield from job.patch_files
    elif job.path.is_dir():
        yield from sorted(job.path.glob("*.dcm"))
    else:
        yield job.path
    if job.annotation is not None:
        yield job.annotation


def source_state(job: SlideJob) -> str:
    """16 hex digits over the job's kind, MPP override and every input file's name, size, mtime and inode.

    '' when a file cannot be stat'ed (the caller then computes the fingerprint).
    """
    h = hashlib.sha256(f"{job.kind}|mpp={job.mpp}|{os.path.abspath(job.path)}".encode())
    try:
        for path in _input_files(job):
            st = os.stat(path)
            h.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}\n".encode())
    except OSError:
        return ""
    return h.hexdigest()[:16]


def input_bytes(job: SlideJob) -> int:
    """The bytes of a job's input files (the size used to balance shards); 0 for files that cannot be read."""
    total = 0
    for path in _input_files(job):
        try:
            total += os.stat(path).st_size
        except OSError:
            continue
    return total
