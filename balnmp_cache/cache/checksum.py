"""Content integrity of a slide: one CRC-32 per array, stored as an attribute, and a NaN/inf count.

Every slide file written since checksums were added carries ``crc32_features``, ``crc32_coords``,
``crc32_region_id`` and ``crc32_patch_key``: 8 hex digits of the CRC-32 (zlib's) of the array as
read back, so the same digest serves HDF5 and Zarr and survives a conversion between them.

* numeric arrays: their little-endian bytes in row-major order (features in the stored dtype,
  coords int64, region_id int32);
* ``patch_key``: the UTF-8 of the keys joined by NUL (HDF5 strings cannot hold a NUL).

Why a stored digest and not HDF5's fletcher32 filter or Zarr's crc32c codec: the filter needs a
chunked layout, whose reads took about 7x the contiguous read in ``benchmarks/bench_cache.py``, it
covers only the heap references of variable-length strings, and neither format's codec notices a
Zarr chunk file that is missing (it reads as ``fill_value``). A digest over the values read catches
all of it, keeps HDF5's contiguous ``read_direct`` path and is one rule for both formats. The cost
is CPU, about 0.4 s of one core per GB (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "CHECKSUMMED",
    "array_crc32",
    "checksum_attr",
    "checksum_attrs",
    "checksum_problems",
    "count_non_finite",
    "has_checksums",
]

CHECKSUMMED: tuple[str, ...] = ("features", "coords", "region_id", "patch_key")
"""The arrays of our slide files that carry a checksum."""

_BLOCK_BYTES = 1 << 22  # CRC and NaN/inf scans go block by block: the block stays in cache, no big temporaries

# Exponent bits all set means NaN or inf: float16 0x7C00, float32 0x7F800000 (sign masked off).
_NON_FINITE = {
    np.dtype(np.float16): (np.uint16, 0x7FFF, 0x7C00),
    np.dtype(np.float32): (np.uint32, 0x7FFFFFFF, 0x7F800000),
}


def checksum_attr(name: str) -> str:
    """The attribute that holds the checksum of array ``name`` (``crc32_features``, ...)."""
    return f"crc32_{name}"


def _little_endian(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    order = array.dtype.byteorder
    if order == ">" or (order == "=" and sys.byteorder == "big"):
        return array.astype(array.dtype.newbyteorder("<"))
    return array


def array_crc32(array: np.ndarray) -> str:
    """8 hex digits: the CRC-32 of a numeric array's little-endian bytes, or of NUL-joined UTF-8 strings."""
    array = np.asarray(array)
    if array.dtype.kind in "OUS":
        items = array.reshape(-1).tolist()
        try:
            text = "\0".join(items)  # the common case: all str
        except TypeError:
            text = "\0".join(k.decode("utf-8") if isinstance(k, bytes) else str(k) for k in items)
        return f"{zlib.crc32(text.encode('utf-8')):08x}"
    flat = _little_endian(array).reshape(-1).view(np.uint8)
    crc = 0
    for start in range(0, flat.size, _BLOCK_BYTES):
        crc = zlib.crc32(flat[start : start + _BLOCK_BYTES].data, crc)
    return f"{crc:08x}"


def checksum_attrs(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    """``{"crc32_<name>": digest}`` for every array of :data:`CHECKSUMMED` (written with the slide)."""
    return {checksum_attr(name): array_crc32(arrays[name]) for name in CHECKSUMMED}


def has_checksums(attrs: Mapping[str, Any]) -> bool:
    """Whether a file stores any checksum (files of older versions store none)."""
    return any(checksum_attr(name) in attrs for name in CHECKSUMMED)


def checksum_problems(attrs: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> list[str]:
    """One message per array whose stored checksum is missing (while others exist) or differs from the data.

    A file without any checksum (written by an older version) has no problem here; callers note it
    with :func:`has_checksums`.
    """
    if not has_checksums(attrs):
        return []
    problems = []
    for name in CHECKSUMMED:
        stored = attrs.get(checksum_attr(name))
        if stored is None:
            problems.append(f"{name}: no checksum stored although the other arrays have one")
            continue
        actual = array_crc32(arrays[name])
        if actual != stored:
            problems.append(f"{name}: checksum mismatch (stored crc32 {stored}, the data read gives {actual})")
    return problems


def count_non_finite(features: np.ndarray) -> int:
    """NaN and ±inf values in a float array (float16/float32 by their exponent bits, in blocks)."""
    features = np.ascontiguousarray(features)
    if features.dtype.kind != "f":
        return 0
    spec = _NON_FINITE.get(features.dtype.newbyteorder("="))
    if spec is None or features.dtype.byteorder == ">":
        return int(features.size - np.count_nonzero(np.isfinite(features)))
    uint, mask, limit = spec
    bits = features.reshape(-1).view(uint)
    step = _BLOCK_BYTES // bits.itemsize
    scratch = np.empty(min(step, bits.size), dtype=uint)
    bad = 0
    for start in range(0, bits.size, step):
        block = bits[start : start + step]
        masked = np.bitwise_and(block, mask, out=scratch[: block.size])
        if masked.max() >= limit:
            bad += int(np.count_nonzero(masked >= limit))
    return bad
