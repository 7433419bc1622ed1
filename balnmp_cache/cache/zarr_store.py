"""Zarr v3 slide stores: ``<slide_id>.zarr`` directories with the same arrays and attributes as our HDF5.

Arrays are uncompressed. ``features`` is chunked in whole-row blocks of at most
:data:`CHUNK_BYTES` (whole-row chunks keep a slide's read sequential); the small arrays are one
chunk each. Attributes live in the group's ``zarr.json``; ``complete`` is written last.
Zarr reads were 6-8x slower than HDF5 in our measurements: choose it for object stores, not speed.

A store is built in a Zarr memory store and written out file by file by
:func:`~balnmp_cache.cache.files.write_tree` (one place for the space check and for a full,
read-only or vanished disk). Reading refuses a store whose chunk files are not all there: Zarr
would return ``fill_value`` (zeros) for a missing chunk.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.cache.files import remove_path, write_tree
from balnmp_cache.cache.schema import SlideHeader, dtype_name, first_line, plain
from balnmp_cache.errors import CacheError, CorruptCacheError

__all__ = ["CHUNK_BYTES", "ZarrStore"]

CHUNK_BYTES = 64 * 2**20
"""Upper bound on the bytes of one ``features`` chunk."""

_REPLACE_ATTEMPTS = 5


def _open_group(path: Path) -> Any:
    import zarr

    return zarr.open_group(store=str(path), mode="r")


def _chunk_rows(n: int, row_bytes: int) -> int:
    return max(1, min(n, CHUNK_BYTES // max(1, row_bytes)))


class ZarrStore:
    """``<slide_id>.zarr`` Zarr v3 directory stores, uncompressed, ``complete`` written last."""

    format = "zarr"

    def image(self, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> dict[str, bytes]:
        """The files of one slide's Zarr v3 store, built in memory: relative path -> bytes.

        Args: as :meth:`balnmp_cache.cache.hdf5_store.Hdf5Store.image`.
        """
        import zarr
        from zarr.storage import MemoryStore

        files: dict[str, Any] = {}
        group = zarr.open_group(store=MemoryStore(store_dict=files), mode="w-", zarr_format=3)
        group.attrs.update({key: attrs[key] for key in sorted(attrs)})
        config: Any = {"write_empty_chunks": True}  # every chunk stored, so a missing chunk file is damage
        features = arrays["features"]
        n, d = features.shape
        rows = _chunk_rows(n, d * features.dtype.itemsize)
        arr = group.create_array(
            "features", shape=(n, d), dtype=features.dtype, chunks=(rows, d), compressors=None, config=config
        )
        for start in range(0, n, rows):
            arr[start : start + rows] = features[start : start + rows]
        for name in ("coords", "region_id"):
            data = arrays[name]
            small = group.create_array(
                name, shape=data.shape, dtype=data.dtype, chunks=data.shape, compressors=None, config=config
            )
            small[...] = data
        keys = group.create_array("patch_key", shape=(n,), dtype=str, chunks=(n,), compressors=None, config=config)
        keys[...] = arrays["patch_key"]
        group.attrs["complete"] = True
        return {key: buffer.to_bytes() for key, buffer in files.items()}

    def write(self, path: Path, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
        """Write one slide to a new Zarr v3 directory ``path`` from its in-memory :meth:`image`, fsynced.

        Args: as :meth:`balnmp_cache.cache.hdf5_store.Hdf5Store.write`.

        Raises:
            StorageError: the disk is full, read-only or gone (the message names the path).
        """
        write_tree(path, self.image(arrays, attrs), what=f"slide '{attrs.get('slide_id', Path(path).stem)}'")

    def publish(self, tmp: Path, final: Path, *, old: Path) -> None:
        """Rename the finished store ``tmp`` to ``final``; an existing ``final`` is moved to ``old`` and removed.

        Raises:
            CacheError: another process kept putting a store back at ``final`` (it writes without the slide lock).
        """
        for _attempt in range(_REPLACE_ATTEMPTS):
            with contextlib.suppress(FileNotFoundError):
                os.replace(final, old)
            try:
                os.replace(tmp, final)
            except OSError:  # another writer put a store back in between (no slide lock): try again
                continue
            finally:
                remove_path(old, ignore_errors=True)
            return
        raise CacheError(f"could not replace {final}: another process keeps writing it; take slide_lock around writes")

    def header(self, path: Path) -> SlideHeader:
        """Open a Zarr store and describe it without reading the arrays.

        Raises:
            CacheError: ``path`` is not a readable Zarr v3 group.
        """
        try:
            group = _open_group(path)
            attrs = {str(k): plain(v) for k, v in group.attrs.items()}
            arrays = {name: (tuple(int(s) for s in arr.shape), dtype_name(arr.dtype)) for name, arr in group.arrays()}
        except Exception as err:  # zarr raises many types (JSON, metadata, missing file) for one cause
            raise CorruptCacheError(path, f"cannot be opened as a Zarr store ({first_line(err)})") from err
        attrs.update(source_format="balnmp", coords_unit="level0_px")
        return SlideHeader(path, str(attrs.get("slide_id") or path.stem), "balnmp", "zarr", attrs, arrays)

    def is_complete(self, path: Path, cache_key: str | None) -> bool:
        """Our store with ``complete`` set, a matching ``cache_key`` and features of ``n_patches`` rows."""
        group = _open_group(path)
        attrs = group.attrs
        if attrs.get("complete") is not True or "features" not in group:
            return False
        if cache_key is not None and attrs.get("cache_key") != cache_key:
            return False
        return group["features"].shape[0] == attrs.get("n_patches", -1)

    def read_into(self, header: SlideHeader, features: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Read one store into preallocated views chunk by chunk; returns ``(region_id, patch_key)``.

        Args: as :meth:`balnmp_cache.cache.hdf5_store.Hdf5Store.read_into`.

        Raises:
            CorruptCacheError: an array cannot be read or lacks chunk files (the message names it).
        """
        name = "the store"
        try:
            group = _open_group(header.path)
            arrays = {name: group[name] for name in ("features", "coords", "region_id", "patch_key")}
            for name, arr in arrays.items():
                missing = arr.nchunks - arr.nchunks_initialized
                if missing:
                    reason = f"{name}: {missing} of {arr.nchunks} chunk file(s) missing (they would read as zeros)"
                    raise CorruptCacheError(header.path, reason)
            name = "features"
            arr = arrays["features"]
            rows = int(arr.chunks[0])
            for start in range(0, features.shape[0], rows):
                features[start : start + rows] = arr[start : start + rows]
            name = "coords"
            coords[...] = arrays["coords"][...]
            name = "region_id"
            region_id = np.asarray(arrays["region_id"][...], dtype=np.int32)
            name = "patch_key"
            patch_key = np.asarray(arrays["patch_key"][...]).astype(object)
        except CorruptCacheError:
            raise
        except Exception as err:  # see header()
            raise CorruptCacheError(header.path, f"{name} could not be read ({first_line(err)})") from err
        return region_id, patch_key

