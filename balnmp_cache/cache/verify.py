"""Check a cache directory without modifying it: every problem names the file it is about.

Every array of every slide file is read and compared with its stored checksum, so any changed
byte of ``features``, ``coords``, ``region_id`` or ``patch_key`` (HDF5 or Zarr) and any missing
Zarr chunk file is reported, naming the file and the array. Files written before checksums were
added get a note, not an error.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from balnmp_cache.cache.checksum import has_checksums
from balnmp_cache.cache.directory import CacheDir
from balnmp_cache.cache.load import check_provenance
from balnmp_cache.cache.locks import writer_alive
from balnmp_cache.cache.naming import AUX_TEMP_RE, CACHE_JSON, MANIFEST_CSV, parse_temp_name
from balnmp_cache.cache.schema import SlideHeader, check_layout
from balnmp_cache.cache.slide import content_problems, read_header, read_into
from balnmp_cache.errors import REEXTRACT_FIX, CacheError, CorruptCacheError
from balnmp_cache.progress import ProgressCallback, emit

__all__ = ["NO_CHECKSUM_NOTE", "Problem", "verify_cache"]

log = logging.getLogger(__name__)

NO_CHECKSUM_NOTE = "no checksum: written by an older version; re-extract with --force to add one"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a cache: the file (or folder) concerned and what is wrong with it.

    Attributes:
        path: the file or folder.
        message: what is wrong, and usually the fix.
        severity: ``error`` (the cache is not sound) or ``note`` (sound, but worth knowing: e.g. a
            file of an older version without checksums).
    """

    path: Path
    message: str
    severity: Literal["error", "note"] = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _directory_key(cache: CacheDir, problems: list[Problem]) -> str | None:
    json_path = cache.directory / CACHE_JSON
    try:
        json_key = cache.hashed_key()
    except CacheError as err:
        problems.append(Problem(json_path, str(err)))
        return cache.key
    if json_key is None:
        problems.append(Problem(json_path, "missing: the cache key's inputs are unknown; re-run extract"))
        return cache.key
    if cache.key is not None and json_key != cache.key:
        problems.append(Problem(json_path, f"hashes to key {json_key} but the directory is named for {cache.key}"))
    return cache.key or json_key


def _check_slide(header: SlideHeader, key: str | None, problems: list[Problem]) -> None:
    path = header.path
    layout = check_layout(header)
    problems.extend(Problem(path, message) for message in layout)
    if header.attrs.get("complete") is not True:
        message = "incomplete: no complete flag (its writer stopped); delete it and re-run extract"
        problems.append(Problem(path, message))
    if key is not None and header.attrs.get("cache_key") != key:
        problems.append(Problem(path, f"cache_key {header.attrs.get('cache_key')!r} is not the directory's key {key}"))
    if layout:
        return
    features = np.empty((header.n_patches, header.feature_dim), dtype=header.features_dtype)
    coords = np.empty((header.n_patches, 2), dtype=header.coords_dtype)
    try:
        region_id, patch_key = read_into(header, features, coords, check=False)
    except CorruptCacheError as err:
        problems.append(Problem(path, f"corrupt: {err.reason}; {REEXTRACT_FIX}"))
        return
    for message in content_problems(header, features, coords, region_id, patch_key):
        problems.append(Problem(path, f"{message}: the file is corrupt; {REEXTRACT_FIX}"))
    if not has_checksums(header.attrs):
        problems.append(Problem(path, NO_CHECKSUM_NOTE, "note"))


def _check_provenance(headers: list[SlideHeader], problems: list[Problem]) -> None:
    disagree = check_provenance(headers)
    disagree.pop("cache_key", None)  # reported per file against the directory's key
    for key, groups in disagree.items():
        majority, _ = Counter({value: len(paths) for value, paths in groups.items()}).most_common(1)[0]
        for value, paths in groups.items():
            if value == majority:
                continue
            for path in paths:
                message = f"{key} is {value} but {len(groups[majority])} other slide(s) have {majority}"
                problems.append(Problem(path, message))


def _check_manifest(
    cache: CacheDir, files: dict[str, Path], headers: dict[str, SlideHeader], problems: list[Problem]
) -> None:
    path = cache.directory / MANIFEST_CSV
    if not path.is_file():
        problems.append(Problem(path, "missing; re-run extract to rebuild it"))
        return
    try:
        rows = {row.slide_id: row for row in cache.manifest()}
    except CacheError as err:
        problems.append(Problem(path, str(err)))
        return
    for sid, row in rows.items():
        if row.status == "ok" and sid not in files:
            problems.append(Problem(path, f"slide '{sid}' has status ok but no file; re-run extract"))
        elif row.status == "ok" and sid in headers and headers[sid].n_patches != row.n_patches:
            message = f"manifest says {row.n_patches} patches, the file has {headers[sid].n_patches}"
            problems.append(Problem(files[sid], message))
    for sid, file in files.items():
        found = rows.get(sid)
        if found is None or found.status != "ok":
            status = f"status {found.status}" if found else "no row"
            problems.append(Problem(file, f"the manifest has no 'ok' row for slide '{sid}' ({status})"))


def _check_leftovers(cache_dir: Path, problems: list[Problem]) -> None:
    for entry in sorted(cache_dir.iterdir()):
        parsed = parse_temp_name(entry.name)
        if parsed is not None:
            if writer_alive(cache_dir, parsed.pid, parsed.token):
                problems.append(Problem(entry, f"temporary being written by a running process (pid {parsed.pid})"))
            else:
                problems.append(Problem(entry, f"temporary left by a stopped writer (pid {parsed.pid}); "
                                               "remove it with clean_stale_temporaries or re-run extract"))
        elif AUX_TEMP_RE.match(entry.name):
            problems.append(Problem(entry, "temporary left by a manifest.csv/cache.json update; delete it"))


def verify_cache(
    cache_dir: Path, *, progress: ProgressCallback | None = None, include_notes: bool = False
) -> list[Problem]:
    """Check every file of a cache directory and return the problems found (empty: all good).

    Checks: each slide file opens and has ``features`` (N, D), ``coords`` (N, 2), ``region_id`` (N,),
    ``patch_key`` (N,) with the right dtypes; every array reads back (all Zarr chunk files present)
    and matches its stored checksum; ``n_patches``, ``feature_dim``, ``dtype``,
    ``schema_version`` and ``slide_id`` attributes agree with the data; no NaN/inf features; the
    ``complete`` flag; ``cache_key`` equals the directory's key; provenance (encoder, weights,
    mode, dtype, patch px, feature dim, ...) agrees across slides; ``manifest.csv`` rows with status
    ok have a file and every file has an ok row; no temporaries are left over. Nothing is modified.

    Args:
        cache_dir: the cache directory, or the ``--out`` root holding one cache.
        progress: receives ``verify`` events.
        include_notes: also return notes (``severity="note"``: files without checksums, written by
            an older version); they are always logged as one warning.

    Raises:
        CacheError: ``cache_dir`` is not a directory.
    """
    if not Path(cache_dir).is_dir():
        raise CacheError(f"cache directory {cache_dir} does not exist; pass the folder that extract wrote")
    cache = CacheDir.open(cache_dir)  # the --out root of extract holding one cache works too
    cache_dir = cache.directory
    problems: list[Problem] = []
    key = _directory_key(cache, problems)
    try:
        files = cache.slide_files()
    except CacheError as err:
        problems.append(Problem(cache_dir, str(err)))
        files = {}
    headers: dict[str, SlideHeader] = {}
    emit(progress, "start", "verify", total=len(files))
    for sid, path in files.items():
        try:
            header = read_header(path)
        except CorruptCacheError as err:
            problems.append(Problem(path, f"corrupt: {err.reason}; {REEXTRACT_FIX}"))
        except CacheError as err:
            problems.append(Problem(path, str(err)))
        else:
            if header.ours:
                _check_slide(header, key, problems)
                headers[sid] = header
            else:
                problems.append(Problem(path, f"a {header.source_format} file, not one written by balnmp_cache"))
        emit(progress, "advance", "verify", steps=1)
    emit(progress, "end", "verify")
    _check_provenance(list(headers.values()), problems)
    _check_manifest(cache, files, headers, problems)
    _check_leftovers(cache_dir, problems)
    notes = [p for p in problems if p.severity == "note"]
    errors = [p for p in problems if p.severity == "error"]
    if notes:
        names = ", ".join(p.path.name for p in notes[:10]) + (" ..." if len(notes) > 10 else "")
        log.warning("%d slide file(s) in %s: %s (%s)", len(notes), cache_dir, NO_CHECKSUM_NOTE, names)
    log.info("verified %s: %d slide file(s), %d problem(s)", cache_dir, len(files), len(errors))
    return problems if include_notes else errors
