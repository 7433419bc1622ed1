"""Load a whole feature cache into memory for training: one preallocated array, slides by offset.

Each slide file is read straight into its rows of one (total_N, D) array (``read_direct`` for
HDF5, chunk by chunk for Zarr), so peak memory stays about one copy of the feature bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.cache.directory import CacheDir
from balnmp_cache.cache.schema import (
    PER_SLIDE_ATTRS,
    PROVENANCE_KEYS,
    SlideHeader,
    check_layout,
    same_value,
)
from balnmp_cache.cache.slide import read_header, read_into
from balnmp_cache.errors import CacheError
from balnmp_cache.progress import ProgressCallback, emit

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


def _usable_headers(files: dict[str, Path], key: str | None) -> tuple[list[tuple[str, SlideHeader]], list[str]]:
    usable, skipped = [], []
    for sid, path in files.items():
        try:
            header = read_header(path)
        except CacheError as err:
            skipped.append(f"{path.name} ({err})")
            continue
        problems = check_layout(header)
        if problems:
            skipped.append(f"{path.name} ({'; '.join(problems)})")
        elif not header.complete:
            skipped.append(f"{path.name} (incomplete: no complete flag)")
        elif key is not None and header.ours and header.attrs.get("cache_key") != key:
            skipped.append(f"{path.name} (cache_key {header.attrs.get('cache_key')!r} is not the directory's {key})")
        else:
            usable.append((sid, header))
    return usable, skipped


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
        log.warning("%d requested slide(s) have no file in %s: %s", len(absent), cache.directory, ", ".join(absent[:20]))
    return {sid: files[sid] for sid in sorted(wanted) if sid in files}


def _checked_headers(cache: CacheDir, files: dict[str, Path]) -> list[tuple[str, SlideHeader]]:
    """The complete, readable slides of this cache's key that agree on provenance."""
    usable, skipped = _usable_headers(files, cache.hashed_key() or cache.key)
    if skipped:
        log.warning("skipping %d slide file(s) in %s: %s", len(skipped), cache.directory, "; ".join(skipped))
    if not usable:
        raise CacheError(f"no complete slide file in {cache.directory}; run extract (or fix the files listed in the log)")
    disagree = check_provenance(h for _, h in usable)
    if disagree:
        raise CacheError(
            f"slides in {cache.directory} disagree on their provenance: {_describe(disagree)}; a cache must hold one "
            "encoder, weights, mode and dtype: move the odd files out or re-extract them"
        )
    return usable


def load_cache(
    path: Path,
    *,
    slide_ids: Iterable[str] | None = None,
    progress: ProgressCallback | None = None,
) -> FeatureCache:
    """Load every complete slide of a cache into one preallocated array.

    Args:
        path: a cache directory (ours, or any folder of CLAM/TRIDENT/STAMP ``.h5`` files), or a
            root holding exactly one ``<encoder>-<mode>-<key>`` cache.
        slide_ids: load only these slides (ids without a file are logged as a warning and left out).
        progress: receives ``start``/``advance``/``end`` events of the task ``"load cache"``.

    Returns:
        The cache, slides sorted by id.

    Raises:
        CacheError: no cache or several at ``path``, no complete slide, or slides that disagree on
            provenance (encoder, weights, mode, dtype, feature_dim, ...; the message names the files).
    """
    cache = CacheDir.open(path)
    usable = _checked_headers(cache, _wanted_files(cache, slide_ids))
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
        region_id[rows], patch_key[rows] = read_into(header, features[rows], coords[rows])
        patient_ids.append(str(header.attrs.get("patient_id") or manifest.get(sid) or sid))
        emit(progress, "advance", "load cache", steps=1)
    emit(progress, "end", "load cache")
    common = {
        k: v
        for k, v in ref.attrs.items()
        if k not in PER_SLIDE_ATTRS and all(same_value(v, h.attrs.get(k)) for h in headers)
    }
    log.info("loaded %d slides, %d patches x %d (%s, %.1f MB) from %s", len(headers), total, ref.feature_dim,
             ref.features_dtype, features.nbytes / 1e6, cache.directory)
    return FeatureCache(
        directory=cache.directory, slide_ids=[sid for sid, _ in usable], patient_ids=patient_ids, features=features,
        offsets=offsets, coords=coords, region_id=region_id, patch_key=patch_key, attrs=common,
    )
