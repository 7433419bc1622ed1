"""What one slide's features look like in memory and on disk, independent of HDF5 or Zarr.

:class:`SlideFeatures` is the in-memory record. :class:`SlideHeader` is what a backend learns from
opening a file without reading the arrays; :func:`check_layout` lists what is wrong with it.
Attributes are normalised to plain Python values (bool, int, float, str, lists of numbers or
strings) so that HDF5 and Zarr round-trip them the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from balnmp_cache.cache.naming import SCHEMA_VERSION
from balnmp_cache.errors import CacheError

__all__ = [
    "DATASETS",
    "DERIVED_ATTRS",
    "PER_SLIDE_ATTRS",
    "PROVENANCE_KEYS",
    "SlideFeatures",
    "SlideHeader",
    "check_layout",
    "dtype_name",
    "first_line",
    "normalise_attrs",
    "plain",
    "same_value",
]

DATASETS: dict[str, str] = {"features": "float", "coords": "int64", "region_id": "int32", "patch_key": "str"}
"""Our datasets and their dtypes (``float``: float16 or float32)."""

PROVENANCE_KEYS: tuple[str, ...] = (
    "schema_version",
    "encoder",
    "encoder_identifier",
    "weights_sha256",
    "random_weights",
    "mode",
    "feature_dim",
    "dtype",
    "input_px",
    "patch_px",
    "coords_unit",
    "cache_key",
)
"""Attributes that must agree across all slides of one cache (missing counts as a value)."""

DERIVED_ATTRS: tuple[str, ...] = ("source_format", "coords_unit")
"""Attributes added on reading (not stored in our files): the file family and the unit of ``coords``."""

PER_SLIDE_ATTRS: tuple[str, ...] = (
    "slide_id",
    "patient_id",
    "source_path",
    "n_patches",
    "created_utc",
    "complete",
    "slide_width",
    "slide_height",
    "mpp",
    "mpp_source",
    "magnification",
    "level",
    "downsample",
    "reader",
)
"""Attributes that describe one slide and never belong to a cache's common provenance."""


@dataclass
class SlideFeatures:
    """The cached features of one slide.

    Attributes:
        slide_id: the slide's id (the file name without suffix).
        features: (N, D) float16 or float32, one embedding per patch.
        coords: (N, 2) int64 level-0 top-left x, y (STAMP files: float µm, see ``attrs["coords_unit"]``).
        region_id: (N,) int32 annotation polygon index per patch, -1 for tissue detection.
        patch_key: (N,) object array of str, a stable key per patch.
        attrs: provenance attributes (JSON-able scalars, strings, lists); see ``docs/architecture.md``.
    """

    slide_id: str
    features: np.ndarray
    coords: np.ndarray
    region_id: np.ndarray
    patch_key: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_patches(self) -> int:
        return int(self.features.shape[0])


@dataclass
class SlideHeader:
    """What opening one slide file tells without reading its arrays.

    Attributes:
        path: the file (or Zarr directory).
        slide_id: the ``slide_id`` attribute, else the file name without suffix.
        source_format: ``balnmp`` (ours, HDF5 or Zarr), ``clam``, ``trident`` or ``stamp``.
        storage: ``hdf5`` or ``zarr``.
        attrs: file attributes as plain values, plus ``source_format`` and ``coords_unit``.
        arrays: dataset name -> (shape, dtype name) for every array the file has.
        features_name: the dataset that holds the features (``feats`` in STAMP files).
    """

    path: Path
    slide_id: str
    source_format: str
    storage: str
    attrs: dict[str, Any]
    arrays: dict[str, tuple[tuple[int, ...], str]]
    features_name: str = "features"

    @property
    def ours(self) -> bool:
        return self.source_format == "balnmp"

    @property
    def n_patches(self) -> int:
        return int(self.arrays[self.features_name][0][0])

    @property
    def feature_dim(self) -> int:
        return int(self.arrays[self.features_name][0][1])

    @property
    def features_dtype(self) -> np.dtype:
        return np.dtype(self.arrays[self.features_name][1])

    @property
    def coords_dtype(self) -> np.dtype:
        """The in-memory dtype of coords: int64 for pixel coordinates, the stored float type otherwise."""
        stored = np.dtype(self.arrays["coords"][1])
        return stored if stored.kind == "f" else np.dtype(np.int64)

    @property
    def complete(self) -> bool:
        """Ours: the ``complete`` flag is set. Other formats carry no flag and count as complete."""
        return self.attrs.get("complete") is True if self.ours else True


def dtype_name(dtype: Any) -> str:
    """``float16``, ``int64``, ... for numeric dtypes; ``str`` for any string dtype."""
    dt = np.dtype(dtype) if not isinstance(dtype, np.dtype) else dtype
    if dt.kind in "OUST":
        return "str"
    return dt.name


def check_layout(header: SlideHeader) -> list[str]:
    """Problems with the datasets, shapes, dtypes and size attributes of one slide (empty if none)."""
    problems: list[str] = []
    arrays = header.arrays
    required = list(DATASETS) if header.ours else [header.features_name, "coords"]
    missing = [name for name in required if name not in arrays]
    if missing:
        return [f"missing dataset(s) {', '.join(missing)} (has: {', '.join(sorted(arrays)) or 'none'})"]
    shape, dtype = arrays[header.features_name]
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        return [f"{header.features_name} has shape {shape}; expected (N, D) with N, D >= 1"]
    n, d = shape
    if dtype not in ("float16", "float32") and (header.ours or not dtype.startswith("float")):
        problems.append(f"{header.features_name} has dtype {dtype}; expected float16 or float32")
    if arrays["coords"][0] != (n, 2):
        problems.append(f"coords has shape {arrays['coords'][0]}; expected ({n}, 2)")
    if not header.ours:
        return problems
    expected = {"coords": "int64", "region_id": "int32", "patch_key": "str"}
    for name, want in expected.items():
        if arrays[name][1] != want:
            problems.append(f"{name} has dtype {arrays[name][1]}; expected {want}")
    for name in ("region_id", "patch_key"):
        if arrays[name][0] != (n,):
            problems.append(f"{name} has shape {arrays[name][0]}; expected ({n},)")
    attrs = header.attrs
    wanted: tuple[tuple[str, object], ...] = (
        ("n_patches", n), ("feature_dim", d), ("dtype", dtype), ("schema_version", SCHEMA_VERSION)
    )
    for key, value in wanted:
        if attrs.get(key) != value:
            problems.append(f"attribute {key} is {attrs.get(key)!r}; expected {value!r}")
    if attrs.get("slide_id") != header.path.stem:
        problems.append(f"attribute slide_id is {attrs.get('slide_id')!r} but the file is named {header.path.name}")
    return problems


def first_line(err: BaseException) -> str:
    """The first line of an error's message (HDF5 and Zarr errors run over many lines), else its type."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def plain(value: Any) -> Any:
    """A stored attribute value as plain Python (numpy scalars, bytes and arrays converted)."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _normalise(key: str, value: Any) -> Any:
    value = plain(value)
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, list):
        items = [_normalise(key, v) for v in value]
        if all(isinstance(v, str) for v in items) or all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in items
        ):
            if any(isinstance(v, float) for v in items):
                items = [float(v) for v in items]
            return items
    raise CacheError(
        f"attribute '{key}' = {value!r} cannot be stored; use a number, a string, a boolean or a list of "
        "numbers or strings (NaN for an unknown number, '' for an unknown string)"
    )


def normalise_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Validate attributes for writing; returns them as plain values, derived keys dropped.

    Raises:
        CacheError: a key is not a string or a value is not storable (the message names the key).
    """
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if not isinstance(key, str) or not key:
            raise CacheError(f"attribute name {key!r} is not a non-empty string")
        if key in DERIVED_ATTRS or key == "complete":
            continue
        out[key] = _normalise(key, value)
    return out


def same_value(a: Any, b: Any) -> bool:
    """Equality of plain attribute values where NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b
