"""Extract's skip check: whether a cache already holds a slide, complete and from the same input.

:meth:`CacheDir.cached_slide <balnmp_cache.cache.directory.CacheDir.cached_slide>` answers with
:func:`skip_check`. A file whose completion-index entry (:mod:`~balnmp_cache.cache.index`) matches its
state is judged from the entry alone; any other file is read through (completeness, header,
fingerprint, every checksum) and, when intact, remembered for the next run.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from balnmp_cache.cache.index import SlideFile, file_state
from balnmp_cache.cache.slide import is_complete, read_header, read_slide
from balnmp_cache.errors import CacheError, CorruptCacheError

if TYPE_CHECKING:
    from balnmp_cache.cache.directory import CacheDir

__all__ = ["CachedSlide", "entry_from_attrs", "same_source", "skip_check"]


@dataclass(frozen=True)
class CachedSlide:
    """What a cache holds for one slide, as extract's skip check sees it.

    Attributes:
        status: ``absent`` (no file), ``done`` (complete, this key, the same input, content intact:
            skip it), ``redo`` (extract it again: unfinished, corrupt, or its source was edited) or
            ``conflict`` (a complete file of *another* source holds this slide id: never replaced
            without ``--force``).
        reason: one line saying why, for ``redo`` and ``conflict``.
    """

    status: Literal["absent", "done", "redo", "conflict"]
    reason: str = ""


def same_source(stored: object, source: Path) -> bool:
    """Whether a file's ``source_path`` attribute names ``source`` (absolute paths compared)."""
    return bool(stored) and os.path.abspath(str(stored)) == os.path.abspath(source)


def entry_from_attrs(slide_id: str, state: str, attrs: Mapping[str, Any], source_state: str) -> SlideFile:
    """The index entry of a slide file in ``state`` whose header attributes are ``attrs``."""
    return SlideFile(
        slide_id=slide_id, state=state, cache_key=str(attrs.get("cache_key", "")), n_patches=int(attrs["n_patches"]),
        fingerprint=str(attrs.get("source_fingerprint", "")), source_path=str(attrs.get("source_path", "")),
        patient_id=str(attrs.get("patient_id", "")), source_state=source_state,
    )


def _by_source(slide_id: str, stored_fp: object, stored_source: object, fingerprint: str, source: Path) -> CachedSlide:
    """``done`` when the input's fingerprint is the file's, else ``redo`` (the same source, edited) or ``conflict``."""
    if stored_fp == fingerprint:
        return CachedSlide("done")
    if same_source(stored_source, source):
        return CachedSlide("redo", f"its source {source} changed since it was extracted")
    return CachedSlide("conflict", (
        f"slide id '{slide_id}' is already in the cache from {stored_source or 'another source'}, a different slide "
        f"than {source}; re-run with --force to replace it, or with --slide-id-prefix PREFIX to keep both"
    ))


def skip_check(
    cache: CacheDir, slide_id: str, fingerprint: Callable[[], str], source: Path, source_state: str
) -> CachedSlide:
    """:meth:`CacheDir.cached_slide <balnmp_cache.cache.directory.CacheDir.cached_slide>`, which documents the rule."""
    path = cache.slide_path(slide_id)
    state = file_state(path)
    if state is None:
        return CachedSlide("absent")
    entry = cache.index().get(slide_id)
    if entry is not None and entry.state == state and entry.cache_key == cache.key:
        known = bool(source_state) and entry.source_state == source_state
        verdict = _by_source(slide_id, entry.fingerprint, entry.source_path,
                             entry.fingerprint if known else fingerprint(), source)
        if verdict.status == "done" and source_state and not known:
            cache.remember(dataclasses.replace(entry, source_state=source_state), recorded=False)
        return verdict
    return _read_through(cache, slide_id, path, state, fingerprint, source, source_state)


def _read_through(
    cache: CacheDir, slide_id: str, path: Path, state: str, fingerprint: Callable[[], str], source: Path,
    source_state: str,
) -> CachedSlide:
    """The skip check on the file itself: completeness, header, fingerprint, then every checksum."""
    if not is_complete(path, cache_key=cache.key):
        return CachedSlide("redo", f"{path.name} is not a complete slide file of this cache (unreadable, truncated "
                                   "or unfinished)")
    try:
        attrs = read_header(path).attrs
    except CacheError:  # replaced or removed since the check above
        return CachedSlide("redo", f"{path.name} could not be opened")
    verdict = _by_source(slide_id, attrs.get("source_fingerprint"), attrs.get("source_path", ""), fingerprint(),
                         source)
    if verdict.status != "done":
        return verdict
    try:
        read_slide(path)
    except CorruptCacheError as err:
        return CachedSlide("redo", f"{path.name} is corrupt ({err.reason})")
    except CacheError as err:
        return CachedSlide("redo", f"{path.name} could not be read ({err})")
    if file_state(path) == state:  # unchanged while it was read: what was read is what the state names
        cache.remember(entry_from_attrs(slide_id, state, attrs, source_state), recorded=False)
    return verdict
