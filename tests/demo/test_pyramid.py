"""The pyramidal TIFFs open in OpenSlide, tiffslide and cuCIM with MPP 0.5 and several levels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from balnmp_cache.demo import DemoSummary


def _jpeg(root: Path, pid: int) -> np.ndarray:
    with Image.open(root / "WSIs" / f"{pid}.jpg") as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def test_openslide_reads_mpp_levels_and_pixels(tiny_cohort: DemoSummary) -> None:
    import openslide

    root = Path(tiny_cohort.root)
    jpeg = _jpeg(root, 2)
    with openslide.OpenSlide(root / "WSIs-pyramidal" / "2.tiff") as slide:
        assert slide.properties["openslide.vendor"] == "generic-tiff"
        assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.5, abs=1e-6)
        assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(0.5, abs=1e-6)
        assert slide.level_count > 1
        assert slide.dimensions == (jpeg.shape[1], jpeg.shape[0])
        assert slide.level_downsamples[1] == pytest.approx(4.0, rel=0.01)
        level0 = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB")).astype(np.int16)
        small = np.asarray(slide.read_region((0, 0), 1, slide.level_dimensions[1]).convert("RGB")).astype(np.int16)
    # Two JPEG encodings of the same picture: close, not equal.
    assert np.abs(level0 - jpeg).mean() < 3.0
    assert np.percentile(np.abs(level0 - jpeg), 99) < 25
    h, w = jpeg.shape[0] // 4, jpeg.shape[1] // 4
    box = jpeg[: h * 4, : w * 4].reshape(h, 4, w, 4, 3).mean(axis=(1, 3))
    assert np.abs(small[:h, :w] - box).mean() < 3.0


def test_tiffslide_reads_the_same(tiny_cohort: DemoSummary) -> None:
    import tiffslide

    root = Path(tiny_cohort.root)
    with tiffslide.TiffSlide(root / "WSIs-pyramidal" / "3.tiff") as slide:
        assert float(slide.properties["tiffslide.mpp-x"]) == pytest.approx(0.5, abs=1e-6)
        assert slide.level_count > 1
        region = np.asarray(slide.read_region((300, 200), 0, (512, 512)).convert("RGB")).astype(np.int16)
    assert np.abs(region - _jpeg(root, 3)[200:712, 300:812]).mean() < 3.0


def test_cucim_reads_the_same(tiny_cohort: DemoSummary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # cuCIM may drop a cufile.log into the working directory
    cucim = pytest.importorskip("cucim")
    root = Path(tiny_cohort.root)
    image = cucim.CuImage(str(root / "WSIs-pyramidal" / "4.tiff"))
    assert image.resolutions["level_count"] > 1
    assert image.spacing()[:2] == pytest.approx([0.5, 0.5])
    region = np.asarray(image.read_region((256, 256), (256, 256), 0)).astype(np.int16)[..., :3]
    assert np.abs(region - _jpeg(root, 4)[256:512, 256:512]).mean() < 3.0
