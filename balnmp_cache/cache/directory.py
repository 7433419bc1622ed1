"""One cache directory as an object: its key and format, slide files, manifest, locks and recovery.

``extract`` talks only to a :class:`CacheDir`: it never builds a slide path, opens a header or
checks completeness itself. Manifest rows go to an append-only journal (O(1) per slide,
:mod:`~balnmp_cache.cache.journal`), compacted into ``manifest.csv`` by :meth:`CacheDir.compact`,
and the skip check answers from the completion index (:mod:`~balnmp_cache.cache.index`) while a
file's size, mtime, inode and ctime are what they were when it was written or last read through.
``load_cache`` and ``verify_cache`` open existing directories with :meth:`CacheDir.open`.

Writes fail as a :class:`~balnmp_cache.errors.StorageError` with one line naming the path and the
errno (full, read-only, no permission), and a cache folder that vanished during a run is reported
as such instead of being made again, empty, by the next lock or write.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from balnmp_cache.cache import journal
from balnmp_cache.cache.index import SlideFile, entries_of, file_state, read_index
from balnmp_cache.cache.locks import clean_stale_temporaries, slide_lock_path, try_lock
from balnmp_cache.cache.manifest import ManifestRow, append_rows, read_manifest, update_manifest
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
from balnmp_cache.cache.skip import CachedSlide, entry_from_attrs, skip_check
from balnmp_cache.cache.slide import is_complete, read_header, write_slide
from balnmp_cache.errors import CacheError, StorageError
from balnmp_cache.fsio import describe_os_error

__all__ = ["CacheDir", "CachedSlide", "resolve_cache_dir"]

log = logging.getLogger(__name__)


def _looks_like_cache(directory: Path) -> bool:
    if (directory / MANIFEST_CSV).is_file() or (directory / CACHE_JSON).is_file():
        return True
    return any(p.suffix.lower() in {".h5", ".hdf5", ".zarr"} and p.name[:1] != "." for p in directory.iterdir())


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


@dataclass
class _Index:
    """The completion index as this process knows it, and entries found since that are not recorded yet."""

    entries: dict[str, SlideFile] | None = None
    unrecorded: list[SlideFile] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


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
    _index: _Index = field(default_factory=_Index, compare=False, repr=False)

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
            StorageError: the folder or its ``cache.json`` cannot be written (full, read-only, no permission).
        """
        format_suffix(format)
        key = cache_key(params)
        directory = Path(root) / cache_dir_name(encoder, mode, key)
        try:
            write_cache_json(directory, params)
        except OSError as err:
            where = directory if directory.exists() else Path(err.filename or directory)
            raise StorageError(f"{describe_os_error(err, where)} (writing {CACHE_JSON})") from err
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

    def record(self, rows: Iterable[ManifestRow], files: Iterable[SlideFile] = ()) -> None:
        """Record ``rows`` (one row per slide, the latest wins) and index entries ``files``: one append to
        the journal, O(1) whatever the size of the cache, safe across processes and kill -9.

        Raises:
            StorageError: the cache folder is gone, or its filesystem refuses the write.
        """
        self.require_directory()
        try:
            append_rows(self.directory, rows, files)
        except OSError as err:
            raise StorageError(f"{describe_os_error(err, self.directory)} (updating {MANIFEST_CSV})") from err

    def compact(self) -> None:
        """Fold the journal into ``manifest.csv`` and ``.index.json`` (nothing to do without a journal).

        Raises:
            StorageError: the cache folder is gone, or its filesystem refuses the write.
        """
        self.require_directory()
        if not journal.journal_path(self.directory).exists():
            return
        try:
            update_manifest(self.directory, [])
        except OSError as err:
            raise StorageError(f"{describe_os_error(err, self.directory)} (compacting {MANIFEST_CSV})") from err

    # -- the completion index ----------------------------------------------------------------------
    def index(self) -> dict[str, SlideFile]:
        """Slide id -> index entry: ``.index.json`` with the journal applied, read once per object."""
        with self._index.lock:
            if self._index.entries is None:
                base, records = journal.snapshot(self.directory, lambda: read_index(self.directory))
                self._index.entries = {**base, **entries_of(records)}
            return self._index.entries

    def remember(self, entry: SlideFile, *, recorded: bool) -> None:
        """Take ``entry`` into this object's index; unless ``recorded``, :meth:`record_verified` journals it."""
        entries = self.index()
        with self._index.lock:
            entries[entry.slide_id] = entry
            if not recorded:
                self._index.unrecorded.append(entry)

    def record_verified(self) -> None:
        """Journal the index entries the skip check found since the last call (one append).

        Raises:
            StorageError: as :meth:`record`.
        """
        with self._index.lock:
            entries, self._index.unrecorded = self._index.unrecorded, []
        if entries:
            self.record([], entries)

    def indexed(self, slide_id: str) -> SlideFile | None:
        """The index entry of ``slide_id`` when its file is still in the state it records, else ``None``."""
        entry = self.index().get(slide_id)
        if entry is None or entry.cache_key != self.key:
            return None
        return entry if file_state(self.slide_path(slide_id)) == entry.state else None

    def require_directory(self) -> None:
        """Raise :class:`~balnmp_cache.errors.StorageError` when the cache folder no longer exists.

        Locks and writes would otherwise make the folder again, without its ``cache.json``.
        """
        if not self.directory.is_dir():
            raise StorageError(
                f"cannot write {self.directory}: the cache folder no longer exists (ENOENT): it was removed, moved or "
                "unmounted during the run; re-run extract when it is back"
            )

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

        Raises:
            StorageError: the cache folder is gone, or its filesystem refuses the lock file.
        """
        self.require_directory()
        try:
            return try_lock(slide_lock_path(self.directory, slide_id))
        except OSError as err:
            raise StorageError(f"{describe_os_error(err, self.directory)} (locking slide '{slide_id}')") from err

    def cached_slide(
        self, slide_id: str, *, fingerprint: Callable[[], str], source: Path, source_state: str = ""
    ) -> CachedSlide:
        """Whether ``slide_id`` from ``source`` is done, must be redone, or collides with another slide.

        The rule: a complete file of this key with the same ``source_fingerprint`` is ``done`` when
        every array matches its checksum (``redo`` when not: it is corrupt). With another
        fingerprint, the same ``source_path`` means the source was edited (a new scan or a corrected
        annotation under the same path): ``redo``. Another ``source_path`` means another slide
        with the same id (e.g. ``1.jpg`` of a second collection): ``conflict``.

        A file whose index entry matches its state is judged from the entry alone (a ``stat``, no
        header, no checksum pass), and when ``source_state`` is the one the entry records, its
        fingerprint is taken from the entry as well (see :mod:`balnmp_cache.cache.index`).

        Args:
            slide_id: the slide.
            fingerprint: returns the input's fingerprint; called only when a complete file exists and
                its source state is not known, since computing it reads from the slide.
            source: the slide file (or folder) this run would extract.
            source_state: the source's state (``extract.fingerprint.source_state``); '' when unknown.
        """
        return skip_check(self, slide_id, fingerprint, source, source_state)

    def n_patches(self, slide_id: str) -> int:
        """Patches in ``slide_id``'s file (from the index while it matches the file); 0 when it is missing or
        unreadable."""
        entry = self.indexed(slide_id)
        if entry is not None:
            return entry.n_patches
        with contextlib.suppress(Exception):
            return int(read_header(self.slide_path(slide_id)).n_patches)
        return 0

    def write(self, sf: SlideFeatures) -> Path:
        """Write one slide atomically (temporary, ``complete`` last, rename); returns its path.

        Raises:
            CacheError: N == 0, NaN/inf features, mismatched shapes or an attribute that cannot be stored.
            StorageError: a full, read-only or forbidden filesystem, or the folder gone (the temporary
                is removed, finished files are untouched).
        """
        self.require_directory()
        return write_slide(self.directory, sf, format=self._format(), dtype=self.dtype)  # type: ignore[arg-type]

    def commit(self, sf: SlideFeatures, row: ManifestRow, *, source_state: str = "") -> Path:
        """Write one slide (as :meth:`write`), then journal its manifest ``row`` with its index entry in one append.

        Args:
            sf: the slide; its attributes hold ``cache_key``, ``source_fingerprint``, ``source_path``.
            row: its ``ok`` manifest row.
            source_state: the source's state when its fingerprint was computed ('' when unknown).

        Raises:
            CacheError, StorageError: as :meth:`write` and :meth:`record`.
        """
        path = self.write(sf)
        state = file_state(path)
        files = []
        if state is not None:
            attrs = {**sf.attrs, "n_patches": sf.n_patches}
            entry = entry_from_attrs(sf.slide_id, state, attrs, source_state)
            self.remember(entry, recorded=True)
            files.append(entry)
        self.record([row], files)
        return path

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
        self.compact()
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

