"""Region grids against a literal re-statement of the official crop-pad-tile rule; filters; tissue grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from balnmp_cache.slides import (
    apply_masks,
    background_ratio,
    clip_regions,
    load_regions,
    open_slide,
    passes_white_filter,
    region_candidates,
    tissue_candidates,
    white_ratio,
)
from balnmp_cache.slides.annotations import Region
from tests.slides.conftest import tissue_image, write_bcnb_json, write_jpeg, write_pyramid_tiff

SIZE = 32  # the official 256, scaled down with the image


def official_patches(image: np.ndarray, polygons: list[np.ndarray], pid: str, size: int, max_blank: float) -> dict:
    """balnmp.md 2.1-2.2 literally: bbox crop (max excluded), fill outside white, pad, tile, filter.

    The polygon is filled with PIL including its outline (cv2.fillPoly also fills the boundary).
    """
    from PIL import Image, ImageDraw

    kept = {}
    for i, points in enumerate(polygons):
        points = np.asarray(points, dtype=np.int64)
        x, y = points.min(axis=0)
        width, height = points.max(axis=0) - points.min(axis=0)
        tumour = image[y : y + height, x : x + width].copy()
        mask = Image.new("L", (int(width), int(height)), 0)
        ImageDraw.Draw(mask).polygon([tuple(p) for p in (points - [x, y]).tolist()], fill=255, outline=255)
        tumour[np.asarray(mask) != 255] = (255, 255, 255)
        pad_h = (size - tumour.shape[0] % size) % size
        pad_w = (size - tumour.shape[1] % size) % size
        padded = np.pad(tumour, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=255)
        for x_off in range(0, padded.shape[1], size):
            for y_off in range(0, padded.shape[0], size):
                patch = padded[y_off : y_off + size, x_off : x_off + size]
                if np.sum(patch == (255, 255, 255)) / 3 / (size * size) >= max_blank:
                    continue
                kept[f"patches/{pid}/{pid}_{i}_{x_off}_{y_off}.jpg"] = (patch, (int(x + x_off), int(y + y_off)))
    return kept


def ours(slide: Path, annotation: Path, pid: str, size: int, max_blank: float, **kwargs) -> tuple[dict, list[str]]:
    with open_slide(slide) as reader:
        width, height = reader.dimensions
        regions, warnings = clip_regions(load_regions(annotation), width=width, height=height)
        candidates = region_candidates(
            regions, slide_id=pid, patch_px=size, patch_level0_px=size, read_level=0, read_px=size, **kwargs
        )
        patches = reader.read_regions([tuple(xy) for xy in candidates.level0_xy.tolist()], 0, (size, size))
    apply_masks(patches, candidates, np.arange(len(candidates)))
    keep = passes_white_filter(patches, white_ratio_max=max_blank)
    kept = {
        key: (patches[i], tuple(candidates.level0_xy[i].tolist()))
        for i, key in enumerate(candidates.patch_key)
        if keep[i]
    }
    return kept, warnings


@pytest.fixture()
def bcnb_slide(tmp_path: Path) -> tuple[Path, Path, np.ndarray, list[np.ndarray]]:
    """A 300 x 200 JPEG with white stripes inside tissue, and four polygons (one past the border)."""
    image = tissue_image(300, 200, seed=7)
    image[60:64, :] = 255  # exact-white lines inside regions count towards the white ratio
    image[:, 150:153] = 255
    write_jpeg(tmp_path / "42.jpg", image, quality=100)
    polygons = [
        [[10, 12], [120, 20], [100, 90], [60, 60], [15, 95]],  # concave
        [[130, 100], [200, 100], [200, 170], [130, 170]],  # axis-aligned square, 70 px: padded grid
        [[250, 20], [340, 20], [340, 90], [250, 90]],  # past the right border (300)
        [[-20, 150], [60, 150], [60, 230]],  # past the left and bottom borders
    ]
    write_bcnb_json(tmp_path / "42.json", polygons)
    clipped = [
        np.array(polygons[0]),
        np.array(polygons[1]),
        np.array([[250, 20], [300, 20], [300, 90], [250, 90]]),
        np.array([[0, 150], [60, 150], [60, 200], [30, 200], [0, 170]]),
    ]
    from PIL import Image

    decoded = np.asarray(Image.open(tmp_path / "42.jpg").convert("RGB"))
    return tmp_path / "42.jpg", tmp_path / "42.json", decoded, clipped


@pytest.mark.parametrize("max_blank", [0.3, 0.05, 1.0])
def test_region_grid_matches_the_official_rule(bcnb_slide, max_blank: float) -> None:
    slide, annotation, decoded, clipped = bcnb_slide
    expected = official_patches(decoded, clipped, "42", SIZE, max_blank)
    got, warnings = ours(slide, annotation, "42", SIZE, max_blank)
    assert len(warnings) == 2 and all("clipped" in w for w in warnings)
    assert sorted(got) == sorted(expected)
    assert len(expected) >= (3 if max_blank < 0.1 else 10)
    for key, (patch, xy) in expected.items():
        assert got[key][1] == xy, key
        np.testing.assert_array_equal(got[key][0], patch, err_msg=key)


def test_prefilter_skips_reads_but_keeps_the_same_patches(bcnb_slide) -> None:
    slide, annotation, _, _ = bcnb_slide
    regions, _ = clip_regions(load_regions(annotation), width=300, height=200)
    everything = region_candidates(
        regions, slide_id="42", patch_px=SIZE, patch_level0_px=SIZE, read_level=0, read_px=SIZE
    )
    fewer = region_candidates(
        regions, slide_id="42", patch_px=SIZE, patch_level0_px=SIZE, read_level=0, read_px=SIZE, max_outside=0.3
    )
    assert len(fewer) < len(everything)
    assert set(fewer.patch_key) <= set(everything.patch_key)
    full, _ = ours(slide, annotation, "42", SIZE, 0.3)
    pre, _ = ours(slide, annotation, "42", SIZE, 0.3, max_outside=0.3)
    assert sorted(full) == sorted(pre)


def test_candidates_layout_and_masks(bcnb_slide) -> None:
    _, annotation, _, _ = bcnb_slide
    regions, _ = clip_regions(load_regions(annotation), width=300, height=200)
    candidates = region_candidates(
        regions, slide_id="42", patch_px=SIZE, patch_level0_px=SIZE, read_level=0, read_px=SIZE
    )
    n = len(candidates)
    assert candidates.level0_xy.shape == (n, 2) and candidates.level0_xy.dtype == np.int64
    assert candidates.region_id.shape == (n,) and candidates.region_id.dtype == np.int32
    assert set(candidates.region_id.tolist()) == {0, 1, 2, 3}
    assert len(set(candidates.patch_key)) == n
    # the 70 px square at (130, 100): a 3 x 3 grid; the inner cell is fully inside, the last column 6 px wide
    square = [i for i in range(n) if candidates.region_id[i] == 1]
    grid = [(130 + x, 100 + y) for y in (0, 32, 64) for x in (0, 32, 64)]
    assert [tuple(candidates.level0_xy[i]) for i in square] == grid
    assert candidates.masks.get(square[0]) is None
    corner = candidates.masks.get(square[-1])
    assert corner.shape == (SIZE, SIZE) and corner.sum() == 6 * 6 and corner[:6, :6].all()
    assert candidates.masks.bits.shape[1] == SIZE * SIZE // 8


def test_downsampled_grid_uses_level0_offsets_and_resized_masks(bcnb_slide) -> None:
    _, annotation, _, _ = bcnb_slide
    regions, _ = clip_regions(load_regions(annotation), width=300, height=200)
    candidates = region_candidates(
        regions[1:2], slide_id="42", patch_px=16, patch_level0_px=32, read_level=1, read_px=16
    )
    assert candidates.patch_level0_px == 32 and candidates.read_level == 1 and candidates.read_px == 16
    assert candidates.patch_key[1] == "patches/42/42_1_32_0.jpg"
    mask = candidates.masks.get(len(candidates) - 1)
    assert mask.shape == (16, 16) and mask.sum() == 3 * 3
    patches = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    apply_masks(patches, candidates, [len(candidates) - 1])
    assert (patches[0][:3, :3] == 0).all() and (patches[0].sum(axis=-1) > 0).sum() == 16 * 16 - 9
    bigger = np.zeros((1, 32, 32, 3), dtype=np.uint8)  # masks follow the size of what was read
    apply_masks(bigger, candidates, [len(candidates) - 1])
    assert (bigger[0].sum(axis=-1) == 0).sum() == 6 * 6


def test_region_fully_painted_cells_are_never_emitted() -> None:
    triangle = Region(0, "t", np.array([[0, 0], [100, 0], [0, 100]], dtype=np.float64))
    candidates = region_candidates([triangle], slide_id="1", patch_px=32, patch_level0_px=32, read_level=0, read_px=32)
    # the cell (96, 96) lies beyond the hypotenuse: no polygon pixel, dropped before any read
    assert "patches/1/1_0_96_96.jpg" not in candidates.patch_key
    assert "patches/1/1_0_0_0.jpg" in candidates.patch_key


def test_white_ratio_is_the_official_channel_count() -> None:
    patches = np.zeros((4, 10, 10, 3), dtype=np.uint8)
    patches[0] = 255
    patches[1, :5] = (255, 0, 0)  # one channel of half the pixels: 50 / 300
    patches[2, :3] = 255  # 30 % white pixels: exactly the threshold, dropped (>=)
    patches[3] = 254  # near-white is not white for the official rule
    ratios = white_ratio(patches)
    np.testing.assert_allclose(ratios, [1.0, 50 / 300, 0.3, 0.0])
    np.testing.assert_array_equal(passes_white_filter(patches), [False, True, False, True])


def test_background_ratio_detects_grey_glass_that_the_official_rule_misses() -> None:
    patches = np.zeros((4, 8, 8, 3), dtype=np.uint8)
    patches[0] = 255
    patches[1] = (178, 176, 179)  # raw slide background
    patches[2] = (200, 80, 150)  # H&E pink
    patches[3, :4] = (178, 176, 179)
    patches[3, 4:] = (120, 40, 160)
    np.testing.assert_allclose(background_ratio(patches), [1.0, 1.0, 0.0, 0.5])
    assert white_ratio(patches[1:2])[0] == 0.0


def test_tissue_candidates_keep_the_stained_block(tmp_path: Path) -> None:
    image = np.full((512, 768, 3), 240, dtype=np.uint8)
    image[128:384, 256:640] = tissue_image(384, 256, seed=2)
    path = write_pyramid_tiff(tmp_path / "s9.tif", image, levels=2)
    with open_slide(path) as reader:
        candidates = tissue_candidates(
            reader, patch_px=64, patch_level0_px=64, read_level=0, read_px=64, min_tissue=0.5, thumbnail_px=256
        )
    expected = {(x, y) for y in range(128, 384, 64) for x in range(256, 640, 64)}
    assert {tuple(xy) for xy in candidates.level0_xy.tolist()} == expected
    assert (candidates.region_id == -1).all()
    assert candidates.patch_key[0] == "s9_256_128"
    assert candidates.masks.get(0) is None


def test_tissue_candidates_on_a_blank_slide_is_empty(tmp_path: Path) -> None:
    path = write_pyramid_tiff(tmp_path / "blank.tif", np.full((256, 256, 3), 245, dtype=np.uint8), levels=1)
    with open_slide(path) as reader:
        candidates = tissue_candidates(reader, patch_px=64, patch_level0_px=64, read_level=0, read_px=64, slide_id="b")
    assert len(candidates) == 0 and candidates.level0_xy.shape == (0, 2)
