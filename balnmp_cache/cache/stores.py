"""The slide-file formats, chosen by a table: each store writes, describes, checks and reads one slide.

``STORES`` maps the ``--format`` name to its store; :func:`store_for` looks one up by name and
:func:`store_of` by an existing path (a directory is a Zarr store, a file is HDF5: ours, CLAM,
TRIDENT or STAMP). Everything format-specific (layout, attributes, fsync, the final rename, and
later per-array checksums) lives in one store class; :mod:`balnmp_cache.cache.slide` holds what
both share (validation, the temporary, the writer lock).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from balnmp_cache.cache.hdf5_store import Hdf5Store
from balnmp_cache.cache.naming import format_suffix
from balnmp_cache.cache.schema import SlideHeader
from balnmp_cache.cache.zarr_store import ZarrStore

__all__ = ["STORES", "SlideStore", "store_for", "store_of"]


class SlideStore(Protocol):
    """One storage format of a slide's four arrays and its attributes."""

    format: str

    def write(self, path: Path, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
        """Create ``path`` with ``arrays`` (features, coords, region_id, patch_key) and ``attrs``.

        ``complete`` is set last and the file fsynced.
        """

    def publish(self, tmp: Path, final: Path, *, old: Path) -> None:
        """Rename the finished temporary ``tmp`` over ``final`` (``old``: where a replaced store goes first)."""

    def header(self, path: Path) -> SlideHeader:
        """Describe ``path`` without reading its arrays; raises CacheError when it cannot be opened."""

    def is_complete(self, path: Path, cache_key: str | None) -> bool:
        """Ours, ``complete`` set, ``n_patches`` rows and (when given) this ``cache_key``; may raise if corrupt."""

    def read_into(self, header: SlideHeader, features: np.ndarray, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fill ``features`` (N, D) and ``coords`` (N, 2) in place; return ``(region_id, patch_key)``."""


STORES: dict[str, SlideStore] = {"hdf5": Hdf5Store(), "zarr": ZarrStore()}
"""Format name (``--format``) -> store; the same keys as :data:`~balnmp_cache.cache.naming.FORMATS` (file suffixes)."""


def store_for(format: str) -> SlideStore:
    """The store of ``format``.

    Raises:
        CacheError: unknown format (the message lists the valid ones).
    """
    format_suffix(format)  # the one error message for an unknown format
    return STORES[format]


def store_of(path: Path) -> SlideStore:
    """The store that reads the existing ``path``: a directory is a Zarr store, a file HDF5."""
    return STORES["zarr"] if Path(path).is_dir() else STORES["hdf5"]
