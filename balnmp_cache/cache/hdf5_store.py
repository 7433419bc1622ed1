"""HDF5 slide files: ours (written and read) and CLAM / TRIDENT / STAMP (read only).

Our layout is chosen for whole-array reads and reproducible bytes: every dataset is contiguous
(unchunked) and uncompressed, the fastest layout for reading a slide at once (see
``docs/architecture.md``); ``track_times=False``, a fixed ``libver`` and attributes written in
sorted order make two writes of the same data and attributes byte-identical.

A file is built in memory (HDF5's core driver, no backing store) and written to disk as one image
by :func:`~balnmp_cache.cache.files.write_tree`: HDF5 itself never writes to the disk, so a full
or read-only filesystem is one clean :class:`~balnmp_cache.errors.StorageError` (HDF5 that hit
ENOSPC while flushing could not close the file and crashed the interpreter at exit). The image is
byte for byte the file HDF5 would have written there.

h5py is imported when a file is opened, so importing this module stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.cache.files import write_tree
from balnmp_cache.cache.schema import SlideHeader, dtype_name, first_line, plain
from balnmp_cache.errors import FOREIGN_FIX, CacheError, CorruptCacheError

__all__ = ["LIBVER", "Hdf5Store"]

LIBVER = ("earliest", "v110")
"""HDF5 format bounds: fixed so the bytes do not change with the library; 'earliest' keeps old readers working."""


def _open(path: Path, mode: str = "r") -> Any:
    import h5py

    # Atomic renames make readers safe without HDF5's own file locks, which fail on some network filesystems.
    return h5py.File(path, mode, libver=LIBVER, locking=False)


def _attr_value(value: Any) -> Any:
    import h5py

    if isinstance(value, bool):
        return np.bool_(value)
    if isinstance(value, int):
        return np.int64(value)
    if isinstance(value, float):
        return np.float64(value)
    if isinstance(value, list):
        if value and all(isinstance(v, str) for v in value):
            return np.array(value, dtype=h5py.string_dtype())
        return np.asarray(value, dtype=np.int64 if all(isinstance(v, int) for v in value) and value else np.float64)
    return value


def _arrays(group: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    import h5py

    out = {}
    for name, item in group.items():
        if isinstance(item, h5py.Dataset):
            string = h5py.check_string_dtype(item.dtype) is not None
            out[name] = (tuple(int(s) for s in item.shape), "str" if string else dtype_name(item.dtype))
    return out


def _foreign_header(f: Any, path: Path, arrays: dict[str, Any], attrs: dict[str, Any]) -> SlideHeader:
    """CLAM / TRIDENT (``features``, ``coords``) or STAMP (``feats``, ``coords``) files."""
    if "feats" in arrays and "coords" in arrays:
        # STAMP: coords are in the unit named by the 'unit' attribute (µm); keep them as given.
        attrs.setdefault("encoder", attrs.get("extractor"))
        attrs.update(source_format="stamp", coords_unit=str(attrs.get("unit", "um")))
        features_name = "feats"
    elif "features" in arrays and "coords" in arrays:
        extra = {str(k): plain(v) for k, v in f["coords"].attrs.items()}
        extra.update({str(k): plain(v) for k, v in f["features"].attrs.items()})
        for key, value in extra.items():
            attrs.setdefault(key, value)
        attrs.update(source_format="trident" if extra else "clam", coords_unit="level0_px")
        features_name = "features"
    else:
        raise CacheError(
            f"{path} has datasets {sorted(arrays) or 'none'}; expected a balnmp_cache file "
            "(features, coords, region_id, patch_key), CLAM/TRIDENT (features, coords) or STAMP (feats, coords)"
        )
    header = SlideHeader(path, path.stem, attrs["source_format"], "hdf5", attrs, arrays, features_name)
    if len(arrays[features_name][0]) == 2:
        attrs.setdefault("feature_dim", header.feature_dim)
        attrs.setdefault("dtype", arrays[features_name][1])
    return header


class Hdf5Store:
    """``<slide_id>.h5`` files: contiguous, uncompressed datasets; attributes in sorted order."""

    format = "hdf5"

    def image(self, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any], *, name: str = "slide.h5") -> bytes:
        """The bytes of the HDF5 file of one slide, built in memory; ``complete`` is the last attribute.

        Args:
            arrays: ``features`` (N, D) float16/float32, ``coords`` (N, 2) int64, ``region_id`` (N,)
                int32, ``patch_key`` (N,) object array of str.
            attrs: normalised attributes without ``complete``.
            name: what HDF5 calls the in-memory file (no file of that name is touched).
        """
        import h5py

        f = h5py.File(name, "w", libver=LIBVER, locking=False, driver="core", backing_store=False)
        try:
            for dataset in ("features", "coords", "region_id"):
                f.create_dataset(dataset, data=arrays[dataset], track_times=False)
            f.create_dataset("patch_key", data=arrays["patch_key"], dtype=h5py.string_dtype(), track_times=False)
            for key in sorted(attrs):
                f.attrs[key] = _attr_value(attrs[key])
            f.flush()
            f.attrs["complete"] = np.bool_(True)
            f.flush()
            return f.id.get_file_image()
        finally:
            f.close()

    def write(self, path: Path, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
        """Write one slide to a new file ``path`` from its in-memory :meth:`image`, fsynced.

        Args:
            path: the (temporary) file to create; must not exist.
            arrays, attrs: as :meth:`image`.

        Raises:
            StorageError: the disk is full, read-only or gone (the message names the path).
        """
        image = self.image(arrays, attrs, name=str(path))
        write_tree(path, {"": image}, what=f"slide '{attrs.get('slide_id', Path(path).stem)}'")

    def publish(self, tmp: Path, final: Path, *, old: Path) -> None:
        """Rename the finished file ``tmp`` over ``final`` (one atomic rename; ``old`` is unused)."""
        os.replace(tmp, final)

    def header(self, path: Path) -> SlideHeader:
        """Open ``path`` and describe it without reading the arrays.

        Raises:
            CacheError: the file cannot be opened as HDF5 or has no recognised layout.
        """
        try:
            with _open(path) as f:
                arrays = _arrays(f)
                attrs = {str(k): plain(v) for k, v in f.attrs.items()}
                if "schema_version" not in attrs and "complete" not in attrs:
                    return _foreign_header(f, path, arrays, attrs)
        except OSError as err:
            raise CorruptCacheError(path, f"cannot be opened as HDF5 ({first_line(err)})") from err
        attrs.update(source_format="balnmp", coords_unit="level0_px")
        return SlideHeader(path, str(attrs.get("slide_id") or path.stem), "balnmp", "hdf5", attrs, arrays)

    def is_complete(self, path: Path, cache_key: str | None) -> bool:
        """Our file with ``complete`` set, a matching ``cache_key`` and features of ``n_patches`` rows."""
        with _open(path) as f:
            attrs = f.attrs
            if "complete" not in attrs or not bool(attrs["complete"]) or "features" not in f:
                return False
            if cache_key is not None and plain(attrs.get("cache_key")) != cache_key:
                return False
            return f["features"].shape[0] == int(attrs.get("n_patches", -1))

    def read_into(self, header: SlideHeader, features: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Read one slide straight into preallocated views; returns ``(region_id, patch_key)``.

        Args:
            header: from :meth:`header`.
            features: (N, D) writable C-contiguous view of the header's dtype (filled in place).
            coords: (N, 2) writable view (filled in place).

        Returns:
            region_id (N,) int32 and patch_key (N,) object array of str; for CLAM/TRIDENT/STAMP files
            region_id is -1 and patch_key is ``"<slide_id>_<x>_<y>"``.

        Raises:
            CorruptCacheError: a dataset cannot be read (the message names it).
        """
        name = "the file"
        try:
            with _open(header.path) as f:
                name = header.features_name
                f[name].read_direct(features)
                name = "coords"
                stored = f["coords"]
                if stored.dtype == coords.dtype:
                    stored.read_direct(coords)
                else:
                    coords[...] = stored[()]
                if header.ours:
                    name = "region_id"
                    region_id = f["region_id"][()].astype(np.int32, copy=False)
                    name = "patch_key"
                    return region_id, f["patch_key"].asstr()[()].astype(object)
        except (OSError, ValueError, TypeError, KeyError, RuntimeError) as err:
            reason = f"{name} could not be read ({first_line(err)})"
            raise CorruptCacheError(header.path, reason, *(() if header.ours else (FOREIGN_FIX,))) from err
        region_id = np.full(len(coords), -1, dtype=np.int32)
        patch_key = np.array([f"{header.slide_id}_{x}_{y}" for x, y in coords.tolist()], dtype=object)
        return region_id, patch_key
