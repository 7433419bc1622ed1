"""Readers on synthetic slides: backend agreement, MPP, border padding, fallback, truncation, PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from balnmp_cache.errors import ConfigError, SlideError
from balnmp_cache.slides import readers
from balnmp_cache.slides.readers import (
    BACKENDS,
    SlideReader,
    available_backends,
    best_level_for_downsample,
    open_slide,
    slide_id_for_path,
    slide_suffix,
)
from tests.slides.conftest import tissue_image, write_jpeg, write_pyramid_tiff

TIFF_BACKENDS = ("cucim", "openslide", "tiffslide")


@pytest.mark.parametrize("backend", TIFF_BACKENDS)
def test_backend_geometry_and_mpp(pyramid_tiff: Path, backend: str) -> None:
    with open_slide(pyramid_tiff, backend=backend) as reader:
        assert isinstance(reader, SlideReader)
        assert reader.backend == backend
        assert reader.dimensions == (700, 520)
        assert reader.level_dimensions == ((700, 520), (350, 260), (175, 130))
        assert reader.level_downsamples == pytest.approx((1.0, 2.0, 4.0))
        assert reader.mpp == pytest.approx(0.5)
        assert reader.magnification is None


def test_backends_return_identical_pixels(pyramid_tiff: Path, pyramid_image: np.ndarray) -> None:
    regions = [((0, 0), 0, (64, 48)), ((300, 200), 0, (100, 90)), ((128, 256), 1, (50, 40)), ((40, 80), 2, (30, 20))]
    results: dict[str, list[np.ndarray]] = {}
    for backend in TIFF_BACKENDS:
        with open_slide(pyramid_tiff, backend=backend) as reader:
            results[backend] = [reader.read_region(xy, level, size) for xy, level, size in regions]
    for backend in TIFF_BACKENDS[1:]:
        for got, expected in zip(results[backend], results["cucim"], strict=True):
            np.testing.assert_array_equal(got, expected)
    level0 = results["cucim"][1].astype(int)
    assert level0.shape == (90, 100, 3)
    # JPEG q95 stays close to the pixels that were written.
    assert np.abs(level0 - pyramid_image[200:290, 300:400]).mean() < 12


@pytest.mark.parametrize("backend", TIFF_BACKENDS)
def test_reads_past_the_border_are_white(pyramid_tiff: Path, backend: str) -> None:
    with open_slide(pyramid_tiff, backend=backend) as reader:
        inside = reader.read_region((650, 480), 0, (50, 40))
        patch = reader.read_region((650, 480), 0, (80, 70))
        np.testing.assert_array_equal(patch[:40, :50], inside)
        assert (patch[40:] == 255).all() and (patch[:, 50:] == 255).all()
        negative = reader.read_region((-10, -5), 0, (30, 20))
        assert (negative[:5] == 255).all() and (negative[:, :10] == 255).all()
        np.testing.assert_array_equal(negative[5:, 10:], reader.read_region((0, 0), 0, (20, 15)))
        assert (reader.read_region((2000, 2000), 0, (16, 16)) == 255).all()
        level1 = reader.read_region((640, 500), 1, (40, 20))  # level-1 x 320..360 of 350, y 250..270 of 260
        assert (level1[:, 30:] == 255).all() and (level1[10:] == 255).all()
        assert (level1[:10, :30] != 255).any()


@pytest.mark.parametrize("backend", TIFF_BACKENDS)
def test_read_regions_matches_single_reads(pyramid_tiff: Path, backend: str) -> None:
    xys = [(0, 0), (128, 128), (256, 0), (640, 480), (-20, 10), (384, 256)]
    with open_slide(pyramid_tiff, backend=backend, num_workers=2) as reader:
        batch = reader.read_regions(xys, 0, (64, 64))
        assert batch.shape == (len(xys), 64, 64, 3) and batch.dtype == np.uint8
        for index, xy in enumerate(xys):
            np.testing.assert_array_equal(batch[index], reader.read_region(xy, 0, (64, 64)))


def test_thumbnail_fits_and_resembles_the_slide(pyramid_tiff: Path, pyramid_image: np.ndarray) -> None:
    with open_slide(pyramid_tiff) as reader:
        thumb = reader.thumbnail(200)
        assert max(thumb.shape[:2]) <= 200 and thumb.shape[2] == 3
        assert thumb.shape[:2] == (148, 200)
        assert abs(float(thumb.mean()) - float(pyramid_image.mean())) < 4
        big = reader.thumbnail(5000)  # larger than the slide: level 0, unscaled
        assert big.shape == (520, 700, 3)


def test_preferred_backend_is_cucim_for_tiled_tiff(pyramid_tiff: Path) -> None:
    with open_slide(pyramid_tiff) as reader:
        assert reader.backend == "cucim"


def test_aperio_description_mpp_not_cucims(tmp_path: Path) -> None:
    """cuCIM reports 1.0 for SVS; MPP and AppMag must come from the Aperio description."""
    description = (
        "Aperio Image Library v12.0.15\r\n512x384 [0,0 512x384] (128x128) JPEG/RGB Q=95|AppMag = 40|MPP = 0.2520"
    )
    path = write_pyramid_tiff(
        tmp_path / "aperio.svs", tissue_image(512, 384), levels=2, mpp=None, description=description
    )
    with open_slide(path) as reader:
        assert reader.backend == "cucim"
        assert reader.mpp == pytest.approx(0.252)
        assert reader.magnification == pytest.approx(40.0)


def test_no_resolution_metadata_gives_none(tmp_path: Path) -> None:
    path = write_pyramid_tiff(tmp_path / "nompp.tif", tissue_image(300, 200), levels=2, mpp=None)
    with open_slide(path) as reader:
        assert reader.mpp is None
        assert reader.magnification is None


def test_jpeg2000_tiles_fall_back_to_tiffslide(tmp_path: Path) -> None:
    image = tissue_image(400, 300, seed=3)
    path = write_pyramid_tiff(tmp_path / "j2k.tif", image, levels=2, compression="jpeg2000")
    with open_slide(path) as reader:
        assert reader.backend == "tiffslide"
        assert reader.mpp == pytest.approx(0.5)
        np.testing.assert_array_equal(reader.read_region((100, 50), 0, (64, 64)), image[50:114, 100:164])
    with pytest.raises(SlideError, match="cucim") as info:
        open_slide(path, backend="cucim")
    assert "\n" not in str(info.value)


def test_undecodable_tiles_fail_every_backend_with_one_line(tmp_path: Path) -> None:
    """Tile bytes replaced by junk: cuCIM returns black without raising, so it must be caught too."""
    import tifffile

    path = write_pyramid_tiff(tmp_path / "junk.svs", tissue_image(256, 256), levels=1)
    data = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        for offset, count in zip(tif.pages[0].dataoffsets, tif.pages[0].databytecounts, strict=True):
            data[offset : offset + count] = b"Z" * count
    path.write_bytes(bytes(data))
    with pytest.raises(SlideError) as info:
        open_slide(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for backend in ("cucim:", "openslide:", "tiffslide:"):
        assert backend in message


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.97])
def test_truncated_tiff_is_a_slide_error(pyramid_tiff: Path, tmp_path: Path, fraction: float) -> None:
    data = pyramid_tiff.read_bytes()
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(SlideError, match=r"truncated|not a readable TIFF|no readable TIFF"):
        open_slide(truncated)


def test_unknown_backend_and_suffix_and_missing_file(pyramid_tiff: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown slide reader backend 'vips'.*cucim, openslide, tiffslide, pil"):
        open_slide(pyramid_tiff, backend="vips")
    odd = tmp_path / "slide.xyz"
    odd.write_bytes(b"nothing")
    with pytest.raises(SlideError, match=r"unsupported slide file type '\.xyz'.*\.svs"):
        open_slide(odd)
    with pytest.raises(SlideError, match="does not exist"):
        open_slide(tmp_path / "absent.svs")


def test_pil_reader_jpeg(tmp_path: Path) -> None:
    image = tissue_image(300, 200, seed=5)
    path = write_jpeg(tmp_path / "7.jpg", image)
    with open_slide(path) as reader:
        assert reader.backend == "pil"
        assert reader.dimensions == (300, 200)
        assert reader.level_count == 1 and reader.level_downsamples == (1.0,)
        assert reader.mpp is None
        from PIL import Image

        decoded = np.asarray(Image.open(path).convert("RGB"))
        np.testing.assert_array_equal(reader.read_region((10, 20), 0, (50, 40)), decoded[20:60, 10:60])
        edge = reader.read_region((280, 190), 0, (32, 32))
        np.testing.assert_array_equal(edge[:10, :20], decoded[190:, 280:])
        assert (edge[10:] == 255).all() and (edge[:, 20:] == 255).all()
        batch = reader.read_regions([(0, 0), (290, 0)], 0, (16, 16))
        np.testing.assert_array_equal(batch[0], decoded[:16, :16])
        assert reader.thumbnail(100).shape == (66, 100, 3)


def test_pil_reader_ignores_decompression_bomb_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    path = write_jpeg(tmp_path / "big.jpg", tissue_image(400, 300))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the file is 120x the limit: PIL would refuse it
    with open_slide(path) as reader:
        assert reader.dimensions == (400, 300)


def test_pil_reader_png_alpha_composited_on_white(tmp_path: Path) -> None:
    from PIL import Image

    rgba = np.zeros((20, 30, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, 15:, 3] = 255  # left half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with open_slide(tmp_path / "a.png") as reader:
        pixels = reader.read_region((0, 0), 0, (30, 20))
    assert (pixels[:, :15] == 255).all()
    assert (pixels[:, 15:] == [200, 0, 0]).all()


def test_truncated_jpeg_is_a_slide_error(tmp_path: Path) -> None:
    path = write_jpeg(tmp_path / "cut.jpg", tissue_image(300, 200))
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(SlideError, match="pil"):
        open_slide(path)


def test_best_level_for_downsample(pyramid_tiff: Path) -> None:
    with open_slide(pyramid_tiff, backend="tiffslide") as reader:
        assert best_level_for_downsample(reader, 1.0) == 0
        assert best_level_for_downsample(reader, 1.9) == 0
        assert best_level_for_downsample(reader, 1.99) == 1  # 1 % tolerance for 2.0005-style pyramids
        assert best_level_for_downsample(reader, 3.0) == 1
        assert best_level_for_downsample(reader, 64.0) == 2
        assert best_level_for_downsample(reader, 0.5) == 0


def test_available_backends_reports_every_backend() -> None:
    report = available_backends()
    assert set(report) == set(BACKENDS)
    assert all(value.startswith(("ok ", "unavailable: ")) for value in report.values())
    assert report["pil"].startswith("ok ")


def test_suffix_table_and_slide_ids(tmp_path: Path) -> None:
    assert readers.BACKENDS_BY_SUFFIX[".svs"][0] == "cucim"
    assert readers.BACKENDS_BY_SUFFIX[".jpg"] == ("pil",)
    assert "openslide" not in readers.BACKENDS_BY_SUFFIX[".ome.tif"][:1]
    assert slide_suffix(Path("a/B.OME.TIF")) == ".ome.tif"
    assert slide_id_for_path(Path("x/12.ome.tiff")) == "12"
    assert slide_id_for_path(Path("x/12.jpg")) == "12"
    dicom = tmp_path / "case7"
    dicom.mkdir()
    assert slide_suffix(dicom) == ".dcm" and slide_id_for_path(dicom) == "case7"
