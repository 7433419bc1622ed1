"""Load a whole feature cache into memory for training: one preallocated array, slides by offset.

Each slide file is read straight into its rows of one (total_N, D) array (``read_direct`` for
HDF5, chunk by chunk for Zarr), so peak memory stays about one copy of the feature bytes, and
checked against its stored checksums as it is read. A cache with a corrupt slide file (unreadable,
truncated, a damaged array, a missing Zarr chunk, NaN/inf features) is refused as a whole with one
:class:`~balnmp_cache.errors.CorruptCacheError` naming the slides and the command that redoes them:
training on it would silently drop or poison those patients.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.cache.checksum import has_checksums
from balnmp_cache.cache.directory import CacheDir
from balnmp_cache.cache.repair import CorruptSlide, corrupt_message
from balnmp_cache.cache.schema import (
    PER_SLIDE_ATTRS,
    PROVENANCE_KEYS,
    SlideHeader,
    check_layout,
    same_value,
)
from balnmp_cache.cache.slide import read_header, read_into
from balnmp_cache.errors import CacheError, CorruptCacheError
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.sorting import natural_key

__all__ = ["FeatureCache", "check_provenance", "load_cache"]

log = logging.getLogger(__name__)


@dataclass
class FeatureCache:
    """Every slide of one cache in memory.

    Attributes:
        directory: the cache directory read.
        slide_ids: sorted slide ids.
        patient_ids: the patient of each slide (file attribute, else manifest, else the slide id).
        features: (total_N, D) in the stored dtype (float16 stays float16; convert per batch).
        offsets: (S + 1,) int64; slide i owns rows ``offsets[i]:offsets[i + 1]``.
        coords: (total_N, 2) int64 level-0 x, y (float µm for STAMP files; see ``attrs["coords_unit"]``).
        region_id: (total_N,) int32.
        patch_key: (total_N,) object array of str.
        attrs: provenance common to all slides (encoder, weights_sha256, random_weights, mode,
            feature_dim, dtype, source_format, coords_unit, ...).
    """

    directory: Path
    slide_ids: list[str]
    patient_ids: list[str]
    features: np.ndarray
    offsets: np.ndarray
    coords: np.ndarray
    region_id: np.ndarray
    patch_key: np.ndarray
    attrs: dict[str, Any]
    _index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {sid: i for i, sid in enumerate(self.slide_ids)}

    def __len__(self) -> int:
        return len(self.slide_ids)

    def slide_rows(self, slide_id: str) -> slice:
        """The rows of ``slide_id`` in ``features``, ``coords``, ``region_id`` and ``patch_key``.

        Raises:
            CacheError: the slide is not in this cache.
        """
        try:
            i = self._index[slide_id]
        except KeyError:
            shown = ", ".join(self.slide_ids[:10]) + (" ..." if len(self.slide_ids) > 10 else "")
            raise CacheError(f"slide '{slide_id}' is not in the cache {self.directory} (slides: {shown})") from None
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def slide_features(self, slide_id: str) -> np.ndarray:
        """(N_slide, D) view of one slide's features."""
        return self.features[self.slide_rows(slide_id)]

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (features, coords, region_id, offsets, patch_key pointers; not the key strings)."""
        arrays = (self.features, self.coords, self.region_id, self.offsets, self.patch_key)
        return int(sum(a.nbytes for a in arrays))


@dataclass
class _Sorted:
    """The slide files of a load: usable, skipped (with why) and corrupt."""

    usable: list[tuple[str, SlideHeader]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    corrupt: list[CorruptSlide] = field(default_factory=list)


def _sort_files(files: dict[str, Path], key: str | None) -> _Sorted:
    """Usable slides; incomplete files and other caches' files are skipped, unreadable or damaged ones corrupt."""
    out = _Sorted()
    for sid, path in files.items():
        try:
            header = read_header(path)
        except CorruptCacheError as err:
            out.corrupt.append(CorruptSlide(sid, path, err.reason, {}))
            continue
        except CacheError as err:  # an unknown layout: not a slide file we can read
            out.corrupt.append(CorruptSlide(sid, path, str(err), {}))
            continue
        problems = check_layout(header)
        if problems:
            out.corrupt.append(CorruptSlide(sid, path, "; ".join(problems), header.attrs))
        elif not header.complete:
            out.skipped.append(f"{path.name} (incomplete: no complete flag)")
        elif key is not None and header.ours and header.attrs.get("cache_key") != key:
            theirs = header.attrs.get("cache_key")
            out.skipped.append(f"{path.name} (cache_key {theirs!r} is not the directory's {key})")
        else:
            out.usable.append((sid, header))
    return out


def _refuse_corrupt(cache: CacheDir, corrupt: list[CorruptSlide]) -> None:
    """Raise one CorruptCacheError for all ``corrupt`` slides (their source from the manifest when unreadable)."""
    if not corrupt:
        return
    rows = {row.slide_id: row for row in cache.manifest()}
    known = []
    for slide in sorted(corrupt, key=lambda c: natural_key(c.slide_id)):
        row = rows.get(slide.slide_id)
        if not slide.attrs and row is not None:
            slide = dataclasses.replace(slide, attrs={"source_path": row.source, "patient_id": row.patient_id})
        known.append(slide)
    reason, fix = corrupt_message(cache.directory, known)
    raise CorruptCacheError(cache.directory, reason, fix)


def check_provenance(headers: Iterable[SlideHeader]) -> dict[str, dict[str, list[Path]]]:
    """Provenance keys whose values differ between slides: key -> repr(value) -> files with it."""
    disagree: dict[str, dict[str, list[Path]]] = {}
    headers = list(headers)
    for key in PROVENANCE_KEYS:
        groups: dict[str, list[Path]] = {}
        for header in headers:
            groups.setdefault(repr(header.attrs.get(key)), []).append(header.path)
        if len(groups) > 1:
            disagree[key] = groups
    return disagree


def _describe(disagree: dict[str, dict[str, list[Path]]]) -> str:
    parts = []
    for key, groups in disagree.items():
        shown = []
        for value, paths in sorted(groups.items(), key=lambda item: len(item[1])):
            names = ", ".join(p.name for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
            shown.append(f"{value} in {names}")
        parts.append(f"{key}: " + "; ".join(shown))
    return " | ".join(parts)


def _wanted_files(cache: CacheDir, slide_ids: Iterable[str] | None) -> dict[str, Path]:
    files = cache.slide_files()
    if slide_ids is None:
        return files
    wanted = list(dict.fromkeys(slide_ids))
    absent = [sid for sid in wanted if sid not in files]
    if absent:
        log.warning(
            "%d requested slide(s) have no file in %s: %s", len(absent), cache.directory, ", ".join(absent[:20])
        )
    return {sid: files[sid] for sid in sorted(wanted) if sid in files}


def _checked_headers(cache: CacheDir, files: dict[str, Path]) -> _Sorted:
    """The complete slides of this cache's key that agree on provenance, and those that cannot be opened.

    Raises:
        CorruptCacheError: no slide can be opened, and some are corrupt.
        CacheError: no complete slide, or slides that disagree on provenance.
    """
    found = _sort_files(files, cache.hashed_key() or cache.key)
    if not found.usable:
        _refuse_corrupt(cache, found.corrupt)
    if found.skipped:
        skipped = "; ".join(found.skipped)
        log.warning("skipping %d slide file(s) in %s: %s", len(found.skipped), cache.directory, skipped)
    if not found.usable:
        raise CacheError(
            f"no complete slide file in {cache.directory}; run extract (or fix the files listed in the log)"
        )
    disagree = check_provenance(h for _, h in found.usable)
    if disagree:
        raise CacheError(
            f"slides in {cache.directory} disagree on their provenance: {_describe(disagree)}; a cache must hold one "
            "encoder, weights, mode and dtype: move the odd files out or re-extract them"
        )
    old = [h.path.name for _, h in found.usable if h.ours and not has_checksums(h.attrs)]
    if old:
        log.warning("%d slide file(s) in %s have no checksum (written by an older version; re-extract with --force to "
                    "add one): %s", len(old), cache.directory, ", ".join(old[:10]) + (" ..." if len(old) > 10 else ""))
    return found


def load_cache(
    path: Path,
    *,
    slide_ids: Iterable[str] | None = None,
    progress: ProgressCallback | None = None,
    check: bool = True,
) -> FeatureCache:
    """Load every complete slide of a cache into one preallocated array, each checked against its checksums.

    Args:
        path: a cache directory (ours, or any folder of CLAM/TRIDENT/STAMP ``.h5`` files), or a
            root holding exactly one ``<encoder>-<mode>-<key>`` cache.
        slide_ids: load only these slides (ids without a file are logged as a warning and left out).
        progress: receives ``start``/``advance``/``end`` events of the task ``"load cache"``.
        check: verify every array against its stored checksum and refuse NaN/inf features (on by
            default; off only to measure what the check costs, ``benchmarks/bench_cache.py``).

    Returns:
        The cache, slides sorted by id. Incomplete files (no complete flag) and files of another
        cache key are left out with a warning.

    Raises:
        CorruptCacheError: a slide file is unreadable, truncated, damaged (a checksum mismatch, a
            missing Zarr chunk) or has NaN/inf features; the one-line message names every such
            slide and the command that re-extracts them. Raised before anything is returned.
        CacheError: no cache or several at ``path``, no complete slide, or slides that disagree on
            provenance (encoder, weights, mode, dtype, feature_dim, ...; the message names the files).
    """
    cache = CacheDir.open(path)
    found = _checked_headers(cache, _wanted_files(cache, slide_ids))
    usable, corrupt = found.usable, found.corrupt
    headers = [h for _, h in usable]
    manifest = {row.slide_id: row.patient_id for row in cache.manifest()}
    offsets = np.zeros(len(headers) + 1, dtype=np.int64)
    np.cumsum([h.n_patches for h in headers], out=offsets[1:])
    total, ref = int(offsets[-1]), headers[0]
    features = np.empty((total, ref.feature_dim), dtype=ref.features_dtype)
    coords = np.empty((total, 2), dtype=np.result_type(*(h.coords_dtype for h in headers)))
    region_id = np.empty(total, dtype=np.int32)
    patch_key = np.empty(total, dtype=object)
    emit(progress, "start", "load cache", total=len(headers))
    patient_ids = []
    for i, (sid, header) in enumerate(usable):
        rows = slice(int(offsets[i]), int(offsets[i + 1]))
        try:
            region_id[rows], patch_key[rows] = read_into(header, features[rows], coords[rows], check=check)
        except CorruptCacheError as err:
            corrupt.append(CorruptSlide(sid, header.path, err.reason, header.attrs))
        patient_ids.append(str(header.attrs.get("patient_id") or manifest.get(sid) or sid))
        emit(progress, "advance", "load cache", steps=1)
    emit(progress, "end", "load cache")
    _refuse_corrupt(cache, corrupt)
    log.info("loaded %d slides, %d patches x %d (%s, %.1f MB) from %s", len(headers), total, ref.feature_dim,
             ref.features_dtype, features.nbytes / 1e6, cache.directory)
    return FeatureCache(
        directory=cache.directory, slide_ids=[sid for sid, _ in usable], patient_ids=patient_ids, features=features,
        offsets=offsets, coords=coords, region_id=region_id, patch_key=patch_key, attrs=_common_attrs(headers),
    )


def _common_attrs(headers: list[SlideHeader]) -> dict[str, Any]:
    """The attributes every slide has with the same value, per-slide ones left out."""
    ref = headers[0]
    return {
        k: v for k, v in ref.attrs.items()
        if k not in PER_SLIDE_ATTRS and all(same_value(v, h.attrs.get(k)) for h in headers)
    }
