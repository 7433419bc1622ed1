"""Synthetic slides for the slide tests: tiny JPEGs, PNGs and pyramidal TIFFs written with PIL/tifffile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def tissue_image(width: int, height: int, *, seed: int = 0) -> np.ndarray:
    """(height, width, 3) uint8 H&E-like texture: pink/purple noise on smooth gradients, no pure white."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [200 + 30 * np.sin(xx / 23.0), 110 + 50 * np.cos(yy / 17.0), 170 + 40 * np.sin((xx + yy) / 31.0)], axis=-1
    )
    noise = rng.normal(0, 12, size=(height, width, 3))
    return np.clip(base + noise, 0, 250).astype(np.uint8)


def write_pyramid_tiff(
    path: Path,
    image: np.ndarray,
    *,
    levels: int = 3,
    mpp: float | None = 0.5,
    compression: str = "jpeg",
    tile: int = 128,
    description: str | None = None,
) -> Path:
    """Tiled pyramidal TIFF, levels as separate pages (downsample 2 each), resolution tags for MPP."""
    import tifffile

    with tifffile.TiffWriter(path) as writer:
        level = image
        for index in range(levels):
            options: dict = {
                "tile": (tile, tile),
                "compression": compression,
                "photometric": "rgb",
                "metadata": None,
            }
            if compression == "jpeg":
                options["compressionargs"] = {"level": 95}
            if mpp is not None:
                pixels_per_cm = 1e4 / (mpp * 2**index)
                options.update(resolution=(pixels_per_cm, pixels_per_cm), resolutionunit="CENTIMETER")
            if index:
                options["subfiletype"] = 1
            if description is not None and index == 0:
                options["description"] = description
            writer.write(level, **options)
            level = level[::2, ::2]
    return path


def write_jpeg(path: Path, image: np.ndarray, *, quality: int = 95) -> Path:
    from PIL import Image

    Image.fromarray(image).save(path, quality=quality)
    return path


def write_bcnb_json(path: Path, polygons: list[list[list[int]]]) -> Path:
    entries = [{"name": f"Annotation {i}", "vertices": poly} for i, poly in enumerate(polygons)]
    path.write_text(json.dumps({"positive": entries, "negative": []}), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def pyramid_image() -> np.ndarray:
    return tissue_image(700, 520, seed=1)


@pytest.fixture(scope="session")
def pyramid_tiff(tmp_path_factory: pytest.TempPathFactory, pyramid_image: np.ndarray) -> Path:
    """700 x 520, 3 levels, JPEG tiles of 128, MPP 0.5 (resolution tags in centimetres)."""
    return write_pyramid_tiff(tmp_path_factory.mktemp("pyramid") / "slide.tif", pyramid_image)
