"""How an extract run made its features: one table of items, one dict of values, key and attributes from it.

Every provenance item is listed once in :data:`PROVENANCE`, with where it goes:

* **key and attributes**: it changes the bytes, so it is hashed into the cache key, and every slide
  file stores it, so a file says how it was made;
* **key only**: it changes the bytes, but a slide file records it in another form (named in the
  item's note), or not yet;
* **attributes only**: it describes the run, and what of it changes the bytes is already in the key
  (the weights digest is part of ``encoder_identifier``).

:func:`extract_provenance` fills the values from the configuration, the built encoder and the patch
filter; :class:`Provenance` hands out :meth:`~Provenance.key_params` (hashed into the key and
written to ``cache.json``) and :meth:`~Provenance.attrs` (stored in every slide file). Items that do
not apply are absent from the dict (the threshold of the filter not chosen; ``slide_mpp`` when
reading at native resolution), so they are in neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from balnmp_cache.cache.naming import SCHEMA_VERSION
from balnmp_cache.extract.config import ExtractConfig

if TYPE_CHECKING:
    from balnmp_cache.extract.filters import PatchFilter
    from balnmp_cache.extract.identity import EncoderIdentity

__all__ = ["EXTRACTION_VERSION", "PROVENANCE", "Item", "Provenance", "extract_provenance"]

EXTRACTION_VERSION = 1
"""Bumped whenever tiling, filtering or preprocessing changes the bytes for the same settings."""


@dataclass(frozen=True)
class Item:
    """Where one provenance item goes: into the cache key, into every slide file's attributes, or both."""

    key: bool
    attrs: bool
    note: str


def _both(note: str) -> Item:
    return Item(key=True, attrs=True, note=note)


def _key_only(note: str) -> Item:
    return Item(key=True, attrs=False, note=note)


def _attrs_only(note: str) -> Item:
    return Item(key=False, attrs=True, note=note)


PROVENANCE: dict[str, Item] = {
    "schema_version": _both("layout of a slide file"),
    "extraction_version": _both("version of the tiling, filtering and preprocessing code"),
    "encoder_identifier": _both("encoder, feature mode and weights digest"),
    "mode": _both("how the encoder's feature map is pooled"),
    "device": _both("where the encoder ran (kernels differ in the last bits)"),
    "precision": _both("autocast precision"),
    "decode": _both("where JPEGs were decoded, only when on the GPU (nvJPEG and the GPU resize differ in the last "
                    "grey level from the CPU path, whose caches keep their key)"),
    "dtype": _both("stored features dtype"),
    "input_px": _both("encoder input side after the resize"),
    "norm_mean": _both("encoder input normalisation"),
    "norm_std": _both("encoder input normalisation"),
    "patch_px": _both("patch side as read"),
    "patch_filter": _both("which patch filter"),
    "white_ratio_max": _both("threshold of the white_ratio filter (only with that filter)"),
    "background_max": _both("threshold of the background filter (only with that filter)"),
    "format": _key_only("the store: a slide file is of its format (.h5 or .zarr)"),
    "target_mpp": _key_only("requested µm/px; each file stores the mpp and patch_level0_px it was read at"),
    "magnification": _key_only("requested objective power; a file's magnification attribute is the slide's own"),
    "slide_mpp": _key_only("µm/px override, only when resampling; a file stores mpp_source 'override'"),
    "min_tissue": _key_only("tissue share for tissue detection; a file stores roi_source (not the share yet)"),
    "encoder": _attrs_only("registry name; encoder_identifier is in the key"),
    "weights": _attrs_only("imagenet, random or a checkpoint path; the digest is in encoder_identifier"),
    "weights_sha256": _attrs_only("full weights digest; its prefix is in encoder_identifier"),
    "random_weights": _attrs_only("whether the weights are seeded random ones; in encoder_identifier"),
    "encoder_mpp": _attrs_only("the encoder's training µm/px (only when it declares one); target_mpp is in the key"),
}
"""Every provenance item an extract run records, and where it goes."""


@dataclass(frozen=True)
class Provenance:
    """The provenance values of one extract run; the key parameters and attributes derive from them.

    Attributes:
        values: item name (a key of :data:`PROVENANCE`) -> value.
    """

    values: Mapping[str, Any]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.values) - set(PROVENANCE))
        if unknown:  # a programming error: every item must say where it goes
            raise ValueError(f"provenance items {unknown} are not listed in PROVENANCE")

    def key_params(self) -> dict[str, Any]:
        """Everything that changes the cached bytes: hashed into the cache key, written to ``cache.json``."""
        return {name: value for name, value in self.values.items() if PROVENANCE[name].key}

    def attrs(self, cache_key: str) -> dict[str, Any]:
        """The attributes every slide file of the run stores, ``cache_key`` included."""
        attrs = {name: value for name, value in self.values.items() if PROVENANCE[name].attrs}
        attrs["cache_key"] = cache_key
        return attrs


def extract_provenance(
    config: ExtractConfig, encoder: EncoderIdentity, patch_filter: PatchFilter, *, decode: str = "cpu"
) -> Provenance:
    """The provenance of extracting with ``config`` by ``encoder`` (a built one's identity) through
    ``patch_filter``, decoding JPEGs on ``decode`` (``cpu`` or ``cuda``)."""
    values: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "extraction_version": EXTRACTION_VERSION,
        "encoder": encoder.name,
        "encoder_identifier": encoder.identifier,
        "weights": encoder.weights,
        "weights_sha256": encoder.weights_sha256,
        "random_weights": bool(encoder.random_weights),
        "mode": encoder.mode,
        "device": encoder.device,
        "precision": encoder.precision,
        "dtype": config.dtype,
        "format": config.format,
        "input_px": encoder.input_px,
        "norm_mean": [float(v) for v in encoder.mean],
        "norm_std": [float(v) for v in encoder.std],
        "patch_px": config.patch_px,
        "target_mpp": config.target_mpp,
        "magnification": config.magnification,
        "min_tissue": config.min_tissue,
        **patch_filter.provenance(),
    }
    if encoder.mpp is not None:
        values["encoder_mpp"] = float(encoder.mpp)
    if config.target_mpp is not None or config.magnification is not None:
        values["slide_mpp"] = config.slide_mpp  # an override changes the grid only when resampling
    if decode != "cpu":
        values["decode"] = decode
    return Provenance(values)
