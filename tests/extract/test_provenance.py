"""One provenance dict: the cache key stays what it was, and what the key depends on is stored with every slide."""

from __future__ import annotations

import json
from typing import Any

import pytest

from balnmp_cache.cache import SCHEMA_VERSION, cache_key, read_slide
from balnmp_cache.cache.schema import same_value
from balnmp_cache.extract import ExtractConfig, run_extract
from balnmp_cache.extract.encode import BatchEncoder
from balnmp_cache.extract.filters import PATCH_FILTERS, patch_filter_for
from balnmp_cache.extract.provenance import EXTRACTION_VERSION, PROVENANCE, Provenance, extract_provenance
from tests.extract.conftest import config

# Items hashed into the key that a slide file records in another form (or not yet): see PROVENANCE's notes.
KEY_ONLY = {"format", "target_mpp", "magnification", "slide_mpp", "min_tissue"}


def v1_key_params(config: ExtractConfig, runner: BatchEncoder) -> dict[str, Any]:
    """The key parameters as the pipeline built them before the provenance table: keys must not change."""
    encoder = runner.encoder
    params: dict[str, Any] = {
        "device": runner.device, "precision": runner.precision, "schema_version": SCHEMA_VERSION,
        "extraction_version": EXTRACTION_VERSION, "encoder_identifier": encoder.identifier, "mode": encoder.mode,
        "dtype": config.dtype, "format": config.format, "input_px": encoder.spec.input_px,
        "norm_mean": list(encoder.spec.mean), "norm_std": list(encoder.spec.std), "patch_px": config.patch_px,
        "target_mpp": config.target_mpp, "magnification": config.magnification,
        "patch_filter": config.patch_filter, "min_tissue": config.min_tissue,
    }
    if config.patch_filter == "white_ratio":
        params["white_ratio_max"] = config.white_ratio_max
    else:
        params["background_max"] = config.background_max
    if config.target_mpp is not None or config.magnification is not None:
        params["slide_mpp"] = config.slide_mpp
    return params


@pytest.fixture(scope="module")
def runner() -> BatchEncoder:
    return BatchEncoder.build(ExtractConfig(weights="random", device="cpu"))


SETTINGS = [
    {},
    {"white_ratio_max": 0.5, "patch_px": 512},
    {"patch_filter": "background", "background_max": 0.4},
    {"target_mpp": 0.5, "slide_mpp": 0.25},
    {"magnification": 20.0},
    {"format": "zarr", "dtype": "float32", "min_tissue": 0.3},
]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(s) or "defaults")
def test_the_cache_key_is_the_one_of_before(runner: BatchEncoder, settings: dict[str, Any]) -> None:
    cfg = ExtractConfig(weights="random", device="cpu", **settings)
    provenance = extract_provenance(cfg, runner.identity, patch_filter_for(cfg))
    assert cache_key(provenance.key_params()) == cache_key(v1_key_params(cfg, runner))


def test_every_item_says_where_it_goes_and_attributes_carry_the_cache_key(runner: BatchEncoder) -> None:
    assert {name for name, item in PROVENANCE.items() if not item.attrs} == KEY_ONLY
    assert all(item.key or item.attrs for item in PROVENANCE.values())
    cfg = ExtractConfig(weights="random", device="cpu", target_mpp=1.0)
    provenance = extract_provenance(cfg, runner.identity, patch_filter_for(cfg))
    assert set(provenance.values) <= set(PROVENANCE)
    attrs = provenance.attrs("0123456789ab")
    assert attrs["cache_key"] == "0123456789ab" and not KEY_ONLY & set(attrs)
    assert None not in attrs.values()  # a slide file cannot store None
    with pytest.raises(ValueError, match="not listed in PROVENANCE"):
        Provenance({"tile_overlap": 0})


@pytest.mark.parametrize("patch_filter", sorted(PATCH_FILTERS))
def test_what_the_key_depends_on_is_stored_in_every_slide_file(small_cohort, tmp_path, patch_filter: str) -> None:
    result = run_extract(config([small_cohort / "WSIs" / "2.jpg"], tmp_path / "cache", patch_filter=patch_filter))
    params = json.loads((result.cache_dir / "cache.json").read_text())
    attrs = read_slide(result.cache_dir / "2.h5").attrs
    stored = {name for name in params if PROVENANCE[name].attrs}
    assert set(params) - stored <= KEY_ONLY
    for name in stored:
        assert same_value(attrs[name], params[name]) or attrs[name] == pytest.approx(params[name]), name
    threshold = {"white_ratio": "white_ratio_max", "background": "background_max"}[patch_filter]
    assert attrs[threshold] == params[threshold] and attrs["patch_filter"] == patch_filter
    other = {"white_ratio_max", "background_max"} - {threshold}
    assert not other & set(attrs)  # the threshold of a filter not used is in neither
    assert attrs["cache_key"] == result.cache_dir.name.rsplit("-", 1)[1]
