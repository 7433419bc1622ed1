"""One cache directory as an object: its key and format, slide files, manifest, locks and recovery.

``extract`` talks only to a :class:`CacheDir`: it never builds a slide path, opens a header or
checks completeness itself. Keeping those behind this object is what lets a completion index, a
manifest journal or a background writer be added here later without touching the pipeline.
``load_cache`` and ``verify_cache`` open existing directories with :meth:`CacheDir.open`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from balnmp_cache.cache.locks import clean_stale_temporaries, slide_lock_path, try_lock
from balnmp_cache.cache.manifest import ManifestRow, read_manifest, update_manifest
from balnmp_cache.cache.naming import (
    CACHE_JSON,
    FORMATS,
    MANIFEST_CSV,
    cache_dir_name,
    cache_key,
    check_slide_id,
    format_suffix,
    list_slide_files,
    parse_cache_dir_name,
    read_cache_json,
    slide_path,
    write_cache_json,
)
from balnmp_cache.cache.schema import SlideFeatures
from balnmp_cache.cache.slide import is_complete, read_header, write_slide
from balnmp_cache.errors import CacheError

__all__ = ["CacheDir", "resolve_cache_dir"]

log = logging.getLogger(__name__)


def _looks_like_cache(directory: Path) -> bool:
    if (directory / MANIFEST_CSV).is_file() or (directory / CACHE_JSON).is_file():
        return True
    suffixes = (".h5", ".hdf5", ".zarr")
    return any(not p.name.startswith(".") and p.suffix.lower() in suffixes for p in directory.iterdir())


def resolve_cache_dir(path: Path) -> Path:
    """The cache directory that ``path`` names: itself, or its single ``<encoder>-<mode>-<key>`` child.

    Raises:
        CacheError: ``path`` is missing, holds no cache, or holds several (the message lists them).
    """
    path = Path(path)
    if not path.is_dir():
        raise CacheError(f"feature cache {path} is not a directory; pass the folder that extract wrote (--cache)")
    if _looks_like_cache(path):
        return path
    children = [
        c
        for c in sorted(path.iterdir())
        if c.is_dir() and not c.name.startswith(".") and (parse_cache_dir_name(c.name) or _looks_like_cache(c))
    ]
    if len(children) == 1:
        return children[0]
    if not children:
        raise CacheError(
            f"no feature cache in {path}: no manifest.csv, cache.json or .h5/.zarr slide files, and no "
            "<encoder>-<mode>-<key> folder; pass the folder that extract wrote (--cache)"
        )
    names = ", ".join(c.name for c in children)
    raise CacheError(f"{path} holds {len(children)} caches ({names}); pass one of them as --cache")


@dataclass(frozen=True)
class CacheDir:
    """A cache directory ``<root>/<encoder>-<mode>-<key>/`` and everything done to it.

    Attributes:
        directory: the folder.
        key: the cache key the folder is named for (``None`` for a folder of foreign files).
        format: ``hdf5`` or ``zarr``, the store of new slide files (``None``: opened, and its
            ``cache.json`` names no format; such a directory can be read but not written).
        dtype: the stored features dtype of new slide files.
    """

    directory: Path
    key: str | None
    format: str | None = None
    dtype: str = "float16"

    @classmethod
    def create(
        cls, root: Path, params: Mapping[str, Any], *, encoder: str, mode: str, format: str, dtype: str
    ) -> CacheDir:
        """The cache of ``params`` under ``root``, created with its ``cache.json`` if missing.

        Args:
            root: the cache root (``--out``).
            params: everything that changes the bytes; hashed into the key and written to ``cache.json``.
            encoder, mode: the readable part of the folder name.
            format, dtype: how new slide files are stored.

        Raises:
            CacheError: a parameter that cannot be hashed, or an unknown ``format``.
        """
        format_suffix(format)
        key = cache_key(params)
        directory = Path(root) / cache_dir_name(encoder, mode, key)
        write_cache_json(directory, params)
        return cls(directory, key, format, dtype)

    @classmethod
    def open(cls, path: Path) -> CacheDir:
        """An existing cache: ``path`` itself, or the one ``<encoder>-<mode>-<key>`` folder under it.

        Raises:
            CacheError: as :func:`resolve_cache_dir`.
        """
        directory = resolve_cache_dir(path)
        parsed = parse_cache_dir_name(directory.name)
        params: dict[str, Any] = {}
        with contextlib.suppress(CacheError):  # an invalid cache.json is reported by whoever reads params()
            params = read_cache_json(directory) or {}
        format = params.get("format") if params.get("format") in FORMATS else None
        return cls(directory, parsed[2] if parsed else None, format, str(params.get("dtype", "float16")))

    # -- the directory --------------------------------------------------------------------------
    def params(self) -> dict[str, Any] | None:
        """The parameters in ``cache.json``; ``None`` when there is none.

        Raises:
            CacheError: ``cache.json`` is not valid JSON.
        """
        return read_cache_json(self.directory)

    def hashed_key(self) -> str | None:
        """The key ``cache.json`` hashes to (``None`` without one); equals :attr:`key` in a sound cache."""
        params = self.params()
        return None if params is None else cache_key(params)

    def slide_files(self) -> dict[str, Path]:
        """Slide id -> file of every slide file in the folder (any format, ours or foreign), sorted by id."""
        return list_slide_files(self.directory)

    def manifest(self) -> list[ManifestRow]:
        """The rows of ``manifest.csv`` sorted by slide id (``[]`` without one)."""
        return read_manifest(self.directory)

    def record(self, rows: Iterable[ManifestRow]) -> None:
        """Merge ``rows`` into ``manifest.csv`` (one row per slide, the latest wins), safe across processes."""
        update_manifest(self.directory, rows)

    # -- one slide ------------------------------------------------------------------------------
    def check_slide_id(self, slide_id: str) -> str:
        """``slide_id`` when it can name a file here, else :class:`~balnmp_cache.errors.CacheError`."""
        return check_slide_id(slide_id)

    def slide_path(self, slide_id: str) -> Path:
        """THE path of ``slide_id``'s file in this cache's format.

        Raises:
            CacheError: an unsafe ``slide_id``, or a directory opened without a known format.
        """
        return slide_path(self.directory, slide_id, self._format())

    def lock(self, slide_id: str) -> Any | None:
        """Claim ``slide_id`` without waiting: the held OS lock (call ``release()``), or ``None`` if taken.

        The kernel drops the lock when this process dies, ``kill -9`` included.
        """
        return try_lock(slide_lock_path(self.directory, slide_id))

    def is_done(self, slide_id: str, fingerprint: Callable[[], str]) -> bool:
        """Complete with this key *and* computed from the same input.

        Args:
            slide_id: the slide.
            fingerprint: returns the input's fingerprint (``source_fingerprint`` attribute); called
                only when a complete file exists, since computing it reads from the slide.

        A complete file from another input is logged as a warning and reported as not done.
        """
        path = self.slide_path(slide_id)
        if not is_complete(path, cache_key=self.key):
            return False
        try:
            attrs = read_header(path).attrs
        except CacheError:  # replaced or removed since the check above
            return False
        if attrs.get("source_fingerprint") == fingerprint():
            return True
        log.warning(
            "%s: the cached features came from another input (%s); extracting again",
            slide_id, attrs.get("source_path", "unknown"),
        )
        return False

    def n_patches(self, slide_id: str) -> int:
        """Patches in ``slide_id``'s file; 0 when it is missing or unreadable."""
        with contextlib.suppress(Exception):
            return int(read_header(self.slide_path(slide_id)).n_patches)
        return 0

    def write(self, sf: SlideFeatures) -> Path:
        """Write one slide atomically (temporary, ``complete`` last, rename); returns its path.

        Raises:
            CacheError: N == 0, NaN/inf features, mismatched shapes or an attribute that cannot be stored.
            OSError: e.g. a full disk (the temporary is removed).
        """
        return write_slide(self.directory, sf, format=self._format(), dtype=self.dtype)  # type: ignore[arg-type]

    # -- after a crash --------------------------------------------------------------------------
    def recover(self) -> list[ManifestRow]:
        """Undo what interrupted runs left: stale temporaries, and complete files whose row was lost.

        A temporary is removed only when its writer is gone (its writer lock is free). A complete
        file of this key without an ``ok`` row (a crash between the rename and the manifest update)
        gets its row back from its own attributes; a slide another process holds is left to it.

        Returns:
            The manifest rows added.
        """
        for path in clean_stale_temporaries(self.directory):
            log.info("removed a temporary left by an interrupted run: %s", path.name)
        have = {row.slide_id for row in self.manifest() if row.status == "ok"}
        suffix = format_suffix(self._format())
        rows = []
        for path in sorted(self.directory.iterdir()):
            slide_id = path.name.removesuffix(suffix)
            if path.name.startswith(".") or slide_id == path.name or slide_id in have:
                continue
            row = self._lost_row(slide_id, path)
            if row is not None:
                rows.append(row)
        if rows:
            log.info("added manifest rows for %d complete slide file(s) whose row was lost", len(rows))
            self.record(rows)
        return rows

    def _lost_row(self, slide_id: str, path: Path) -> ManifestRow | None:
        try:
            lock = self.lock(slide_id)
        except CacheError:  # a name no slide of ours can have
            return None
        if lock is None:  # being written now: its writer records it
            return None
        try:
            if not is_complete(path, cache_key=self.key):
                return None
            attrs = read_header(path).attrs
        except CacheError:
            return None
        finally:
            lock.release()
        return ManifestRow(
            slide_id=slide_id, patient_id=str(attrs.get("patient_id", "")), source=str(attrs.get("source_path", "")),
            status="ok", n_patches=int(attrs["n_patches"]),
        )

    def _format(self) -> str:
        if self.format is None:
            raise CacheError(
                f"{self.directory} has no cache.json naming its format, so new slide files cannot be written "
                "there; extract into a new --out"
            )
        return self.format
