"""Small synthetic slides and caches for the feature-store tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from balnmp_cache.cache import (
    ManifestRow,
    SlideFeatures,
    cache_dir_name,
    update_manifest,
    write_cache_json,
    write_slide,
)

PARAMS: dict[str, Any] = {
    "encoder": "efficientnet_lite0",
    "encoder_identifier": "efficientnet_lite0@sha256:57934424",
    "mode": "avg",
    "dtype": "float16",
    "input_px": 224,
    "patch_px": 256,
    "norm_mean": [0.485, 0.456, 0.406],
    "target_mpp": 0.5,
}


def provenance(key: str, **overrides: Any) -> dict[str, Any]:
    """The attributes an extract run would store with every slide."""
    attrs = {
        "patient_id": "",
        "source_path": "/data/slide.svs",
        "encoder": "efficientnet_lite0",
        "encoder_identifier": "efficientnet_lite0@sha256:57934424",
        "weights": "imagenet",
        "weights_sha256": "57934424" * 8,
        "random_weights": False,
        "mode": "avg",
        "input_px": 224,
        "norm_mean": [0.485, 0.456, 0.406],
        "norm_std": [0.229, 0.224, 0.225],
        "patch_px": 256,
        "mpp": float("nan"),
        "mpp_source": "none",
        "reader": "pil",
        "cache_key": key,
        "created_utc": "2026-01-01T00:00:00+00:00",
    }
    attrs.update(overrides)
    return attrs


def make_slide(slide_id: str, n: int = 6, d: int = 8, *, seed: int = 0, **attrs: Any) -> SlideFeatures:
    """A slide of ``n`` random patches of dimension ``d`` with official-style patch keys."""
    rng = np.random.default_rng(seed)
    coords = rng.integers(0, 10_000, size=(n, 2), dtype=np.int64)
    keys = [f"patches/{slide_id}/{slide_id}_{i % 3}_{x}_{y}.jpg" for i, (x, y) in enumerate(coords)]
    return SlideFeatures(
        slide_id=slide_id,
        features=rng.normal(size=(n, d)).astype(np.float32),
        coords=coords,
        region_id=(np.arange(n) % 3).astype(np.int32),
        patch_key=np.array(keys, dtype=object),
        attrs=dict(attrs),
    )


@pytest.fixture
def build_cache(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a complete cache directory (cache.json, manifest, slides) under ``tmp_path``."""

    def build(slides: dict[str, int] | None = None, *, format: str = "hdf5", d: int = 8) -> Path:
        slides = slides if slides is not None else {"s1": 5, "s2": 7, "s3": 3}
        staging = tmp_path / "staging"
        key = write_cache_json(staging, PARAMS)
        cache_dir = tmp_path / "root" / cache_dir_name(PARAMS["encoder"], PARAMS["mode"], key)
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(cache_dir)
        rows = []
        for i, (sid, n) in enumerate(slides.items()):
            sf = make_slide(sid, n, d, seed=i, **provenance(key, patient_id=f"P{sid}"))
            write_slide(cache_dir, sf, format=format)
            row = ManifestRow(slide_id=sid, patient_id=f"P{sid}", source=f"/data/{sid}.svs", status="ok", n_patches=n)
            rows.append(row)
        update_manifest(cache_dir, rows)
        return cache_dir

    return build
