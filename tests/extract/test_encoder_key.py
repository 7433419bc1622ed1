"""The cache key of an extract run: preprocessing, pooling and resolution are in it, and the CNNs' keys are as before.

The key is computed as ``run_extract`` computes it (built encoder, patch filter, provenance) without reading a
slide. The fixed keys below are the ones the code produced before foundation-model encoders existed (same
configurations, same pinned torch), so caches extracted then are still found.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from balnmp_cache.cache.naming import cache_key
from balnmp_cache.extract import ExtractConfig
from balnmp_cache.extract.encode import BatchEncoder, resolve_decode
from balnmp_cache.extract.filters import patch_filter_for
from balnmp_cache.extract.provenance import extract_provenance


def _key(encoder: str, **overrides) -> tuple[str, str]:
    """(cache key, encoder identifier) of extracting with ``encoder`` on the CPU in fp32."""
    cfg = ExtractConfig(sources=[Path("slides")], encoder=encoder, device="cpu", precision="fp32", **overrides)
    identity = BatchEncoder.build(cfg).identity
    decode = resolve_decode(cfg, identity.device)
    provenance = extract_provenance(cfg, identity, patch_filter_for(cfg), decode=decode)
    return cache_key(provenance.key_params()), identity.identifier


# encoder, overrides -> (key, identifier) as produced before token pooling, hub models and per-encoder resolution
BEFORE = [
    ("efficientnet_lite0", {}, ("29b34aa4d9d7", "efficientnet_lite0:avg:imagenet:sha256=5ad152ffe670")),
    ("efficientnet_lite0", {"weights": "imagenet"},
     ("29b34aa4d9d7", "efficientnet_lite0:avg:imagenet:sha256=5ad152ffe670")),
    ("efficientnet_lite0", {"mode": "max"}, ("a71a139f8d90", "efficientnet_lite0:max:imagenet:sha256=5ad152ffe670")),
    # random weights: the digest of torch's seeded initialisation (torch is pinned)
    ("resnet18", {"weights": "random"}, ("18f7c5477306", "resnet18:avg:random:sha256=aa94b69973ef")),
    ("resnet50", {"weights": "random"}, ("072b74c6d04a", "resnet50:avg:random:sha256=2b505d9f782f")),
    ("vgg16_bn", {"weights": "random", "mode": "flatten"},
     ("06c5fda67f3f", "vgg16_bn:flatten:random:sha256=dc48057e0943")),
    ("alexnet", {"weights": "random"}, ("a6fd8ba6468d", "alexnet:flatten:random:sha256=635fed76fce9")),
    ("densenet121", {"weights": "random"}, ("9056a0d5bb00", "densenet121:avg:random:sha256=f1866a9ab7a9")),
    pytest.param("inception_v3", {"weights": "random"}, ("163b40b040ce", "inception_v3:avg:random:sha256=0bb0f7efbcae"),
                 marks=pytest.mark.slow),  # its initialisation takes seconds
]


@pytest.mark.parametrize(("encoder", "overrides", "expected"), BEFORE, ids=lambda value: None)
def test_the_built_in_cnns_keep_their_keys(encoder, overrides, expected):
    assert _key(encoder, **overrides) == expected


def _overlay(**values) -> dict:
    return {"encoder_kwargs": {"pretrained_cfg_overlay": values}}


CHANGES = {
    "pooling": {"mode": "max"},
    "interpolation": _overlay(interpolation="bicubic"),
    "crop": _overlay(crop_pct=0.875),
    "input size": _overlay(input_size=[3, 256, 256]),
    "mean": _overlay(mean=[0.7, 0.55, 0.7]),
    "std": _overlay(std=[0.2, 0.23, 0.18]),
    "resolution": {"target_mpp": 0.5},
}


def test_preprocessing_pooling_and_resolution_each_change_the_key():
    base, base_identifier = _key("resnet18", weights="random")
    keys = {"base": base}
    for what, overrides in CHANGES.items():
        key, identifier = _key("resnet18", weights="random", **overrides)
        assert key not in keys.values(), f"{what} leaves the key as {[k for k, v in keys.items() if v == key]}"
        keys[what] = key
        if what in ("interpolation", "crop"):  # a transform other than the official one is named in the identifier
            assert ":pre=" in identifier and identifier.startswith(base_identifier), identifier
