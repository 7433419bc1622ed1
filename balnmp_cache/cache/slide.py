"""Write and read one slide's features, atomically, in HDF5 or Zarr.

A write goes to ``.tmp-<pid>-<token>-<slide_id>.<ext>`` in the target directory while the writer
holds the lock ``.locks/write-<pid>-<token>.lock``; the file gets ``complete=True`` as its last
attribute, is fsynced and then renamed over ``<slide_id>.<ext>``. Readers therefore see either the
previous complete file, or the new complete file, never a partial one; a crash leaves only the
temporary, which :func:`~balnmp_cache.cache.locks.clean_stale_temporaries` removes.

Every file stores a CRC-32 per array (:mod:`balnmp_cache.cache.checksum`); :func:`read_into` and
:func:`read_slide` check them, and NaN/inf features, and raise
:class:`~balnmp_cache.errors.CorruptCacheError` naming the file and the array on any mismatch.
"""

from __future__ import annotations

import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from balnmp_cache.cache.checksum import checksum_attrs, checksum_problems, count_non_finite
from balnmp_cache.cache.files import remove_path
from balnmp_cache.cache.locks import writer_lock
from balnmp_cache.cache.naming import SCHEMA_VERSION, check_slide_id, slide_path, temp_path
from balnmp_cache.cache.schema import SlideFeatures, SlideHeader, check_layout, normalise_attrs
from balnmp_cache.cache.stores import STORES, store_for, store_of
from balnmp_cache.errors import FOREIGN_FIX, REEXTRACT_FIX, CacheError, CorruptCacheError, StorageError
from balnmp_cache.fsio import describe_os_error, fsync_dir

__all__ = ["DTYPES", "content_problems", "is_complete", "read_header", "read_into", "read_slide", "write_slide"]

log = logging.getLogger(__name__)

DTYPES = ("float16", "float32")


def _prepare(sf: SlideFeatures, dtype: str) -> dict[str, np.ndarray]:
    """Validate and convert the arrays of ``sf`` to their stored dtypes."""
    sid = sf.slide_id
    features = np.asarray(sf.features)
    if features.ndim != 2 or features.shape[1] < 1:
        raise CacheError(f"features of slide '{sid}' have shape {features.shape}; expected (N, D)")
    n = features.shape[0]
    if n == 0:
        raise CacheError(
            f"slide '{sid}' has no patches; record it in the manifest with status 'empty' instead of writing a file"
        )
    with np.errstate(over="ignore"):  # overflow to inf is reported just below
        stored = np.ascontiguousarray(features, dtype=np.dtype(dtype))
    # A float64 sum is finite exactly when every value is (no float16/32 sum can overflow it).
    if not np.isfinite(stored.sum(dtype=np.float64)):
        bad = int((~np.isfinite(stored)).sum())
        hint = " (values beyond float16's range of 65504: write with dtype float32)" if dtype == "float16" else ""
        raise CacheError(f"features of slide '{sid}' have {bad} NaN/inf values in {dtype}{hint}")
    coords = np.asarray(sf.coords)
    if coords.shape != (n, 2):
        raise CacheError(f"coords of slide '{sid}' have shape {coords.shape}; expected ({n}, 2)")
    if coords.dtype.kind == "f" and not np.array_equal(coords, np.round(coords)):
        raise CacheError(f"coords of slide '{sid}' are not whole level-0 pixels; pass integer coordinates")
    region_id = np.asarray(sf.region_id)
    if region_id.shape != (n,) or (region_id.size and region_id.dtype.kind not in "iu"):
        raise CacheError(
            f"region_id of slide '{sid}' has shape {region_id.shape}, dtype {region_id.dtype}; expected ({n},) int"
        )
    patch_key = np.asarray(sf.patch_key, dtype=object)
    if patch_key.shape != (n,):
        raise CacheError(f"patch_key of slide '{sid}' has shape {patch_key.shape}; expected ({n},)")
    return {
        "features": stored,
        "coords": np.ascontiguousarray(coords, dtype=np.int64),
        "region_id": np.ascontiguousarray(region_id, dtype=np.int32),
        "patch_key": np.array([str(k) for k in patch_key], dtype=object),
    }


def _stored_attrs(sf: SlideFeatures, arrays: dict[str, np.ndarray], dtype: str) -> dict[str, Any]:
    """``sf.attrs`` normalised, plus what the data says (sizes, dtype, checksums) and the writer's version."""
    from balnmp_cache import __version__

    attrs = normalise_attrs(sf.attrs)
    attrs.setdefault("created_utc", datetime.now(UTC).isoformat(timespec="seconds"))
    attrs.setdefault("package_version", __version__)
    n, d = arrays["features"].shape
    attrs.update(schema_version=SCHEMA_VERSION, slide_id=sf.slide_id, n_patches=int(n), feature_dim=int(d), dtype=dtype)
    attrs.update(checksum_attrs(arrays))
    return attrs


def write_slide(
    directory: Path,
    sf: SlideFeatures,
    *,
    format: Literal["hdf5", "zarr"] = "hdf5",
    dtype: Literal["float16", "float32"] = "float16",
) -> Path:
    """Write one slide atomically to ``slide_path(directory, sf.slide_id, format)``, replacing any old file.

    The attributes stored are ``sf.attrs`` plus ``schema_version``, ``slide_id``, ``n_patches``,
    ``feature_dim`` and ``dtype`` from the data, the arrays' checksums (``crc32_features``, ...),
    ``created_utc`` and ``package_version`` when absent, and ``complete=True`` last. Keys in sorted
    order, so equal inputs give byte-identical HDF5 files.

    Args:
        directory: the cache directory (created if missing).
        sf: the slide; N >= 1 patches.
        format: ``hdf5`` (fastest to read) or ``zarr`` (a Zarr v3 directory store).
        dtype: the stored features dtype.

    Returns:
        The final path.

    Raises:
        CacheError: an invalid argument, N == 0, mismatched shapes, NaN/inf features or an attribute
            that cannot be stored.
        StorageError: the filesystem refused the write (full, read-only, no permission, the folder
            gone); the temporary is removed, an old file of the slide is left as it was.
    """
    check_slide_id(sf.slide_id)
    if dtype not in DTYPES:
        raise CacheError(f"features dtype '{dtype}' is not one of {', '.join(DTYPES)}; change --dtype")
    directory = Path(directory)
    final = slide_path(directory, sf.slide_id, format)
    arrays = _prepare(sf, dtype)
    attrs = _stored_attrs(sf, arrays, dtype)
    n, d = arrays["features"].shape
    store = store_for(format)
    token = secrets.token_hex(4)
    tmp = temp_path(directory, sf.slide_id, format, token=token)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with writer_lock(directory, os.getpid(), token):
            try:
                store.write(tmp, arrays, attrs)
                store.publish(tmp, final, old=temp_path(directory, sf.slide_id, format, kind="old", token=token))
                fsync_dir(directory)
            except BaseException:
                remove_path(tmp, ignore_errors=True)
                raise
    except OSError as err:  # the lock, the rename or the folder's fsync (write_tree reports its own)
        raise StorageError(f"{describe_os_error(err)} (writing slide '{sf.slide_id}')") from err
    log.debug("wrote %s (%d patches x %d, %s)", final, n, d, dtype)
    return final


def read_header(path: Path) -> SlideHeader:
    """Describe one slide file (ours in HDF5 or Zarr, CLAM, TRIDENT or STAMP) without reading its arrays.

    Raises:
        CacheError: the file is missing, unreadable or of an unknown layout.
    """
    path = Path(path)
    if not path.exists():
        raise CacheError(f"slide file {path} does not exist")
    return store_of(path).header(path)


def content_problems(
    header: SlideHeader, features: np.ndarray, coords: np.ndarray, region_id: np.ndarray, patch_key: np.ndarray
) -> list[str]:
    """What is wrong with a slide's arrays as read: checksum mismatches (one per array) and NaN/inf features.

    Files without checksums (older versions, CLAM/TRIDENT/STAMP) are checked for NaN/inf only.
    """
    arrays = {"features": features, "coords": coords, "region_id": region_id, "patch_key": patch_key}
    problems = checksum_problems(header.attrs, arrays) if header.ours else []
    bad = count_non_finite(features)
    if bad:
        rows = np.flatnonzero(~np.isfinite(features).all(axis=1))
        problems.append(f"{bad} NaN/inf feature values in {len(rows)} patch(es), first rows {rows[:5].tolist()}")
    return problems


def read_into(
    header: SlideHeader, features: np.ndarray, coords: np.ndarray, *, check: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Fill ``features`` (N, D) and ``coords`` (N, 2) in place; returns ``(region_id, patch_key)``.

    Args:
        header: from :func:`read_header`.
        features, coords: preallocated writable views of the header's dtypes.
        check: compare every array with its stored checksum and refuse NaN/inf features (skip
            only to measure what the check costs).

    Raises:
        CorruptCacheError: an array cannot be read, a Zarr chunk file is missing, a checksum does
            not match or a feature is NaN/inf (the message names the file and the arrays).
    """
    region_id, patch_key = STORES[header.storage].read_into(header, features, coords)
    if check:
        problems = content_problems(header, features, coords, region_id, patch_key)
        if problems:
            fix = REEXTRACT_FIX if header.ours else FOREIGN_FIX
            raise CorruptCacheError(header.path, "; ".join(problems), fix)
    return region_id, patch_key


def read_slide(path: Path) -> SlideFeatures:
    """Read one slide: ours (HDF5 or Zarr), CLAM/TRIDENT (``features``, ``coords``) or STAMP (``feats``, ``coords``).

    ``attrs`` holds the file's attributes plus ``source_format`` (``balnmp``, ``clam``, ``trident``,
    ``stamp``) and ``coords_unit`` (``level0_px``; STAMP: its ``unit``, µm, coords kept as given).
    CLAM/TRIDENT/STAMP files get ``region_id`` -1 and ``patch_key`` ``"<slide_id>_<x>_<y>"``.

    Raises:
        CorruptCacheError: unreadable, with inconsistent shapes, a checksum mismatch or NaN/inf features.
        CacheError: of an unknown layout, or ours but incomplete.
    """
    header = read_header(path)
    problems = check_layout(header)
    if problems:
        raise CorruptCacheError(header.path, "; ".join(problems))
    if not header.complete:
        raise CacheError(f"{header.path} is incomplete (no complete flag: its writer stopped); re-run extract")
    features = np.empty((header.n_patches, header.feature_dim), dtype=header.features_dtype)
    coords = np.empty((header.n_patches, 2), dtype=header.coords_dtype)
    region_id, patch_key = read_into(header, features, coords)
    return SlideFeatures(header.slide_id, features, coords, region_id, patch_key, header.attrs)


def is_complete(path: Path, *, cache_key: str | None = None) -> bool:
    """Whether ``path`` is a finished slide file of ours (and of ``cache_key`` when given).

    True when the ``complete`` flag is set, ``features`` has ``n_patches`` rows and, if
    ``cache_key`` is given, the file's ``cache_key`` equals it. Missing, truncated, corrupt,
    foreign or half-written files give False; this function never raises.
    """
    path = Path(path)
    try:
        return path.exists() and bool(store_of(path).is_complete(path, cache_key))
    except Exception as err:  # a corrupt file may fail in any library layer; it is simply not complete
        log.debug("%s is not complete: %s", path, err)
        return False
