"""The classical segmenter on drawn H&E-like patches: stains, seeds, splitting, size filters in µm²."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.color import rgb2hed
from skimage.morphology import h_maxima as skimage_h_maxima

from balnmp_cache.nuclei.classical import ClassicalParams, ClassicalSegmenter, h_maxima, segment_patch, stain_od
from balnmp_cache.nuclei.detection import centroids

PINK, PURPLE = (235, 180, 210), (95, 60, 150)


def _patch(discs, size=128, colour=PURPLE) -> np.ndarray:
    """Pink background with purple discs (cx, cy, r)."""
    yy, xx = np.mgrid[0:size, 0:size]
    rgb = np.empty((size, size, 3), dtype=np.uint8)
    rgb[...] = PINK
    for cx, cy, r in discs:
        rgb[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = colour
    return rgb


def test_stain_channels_equal_rgb2hed():
    rgb = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    reference = np.maximum(rgb2hed(rgb), 0)
    for stain in range(3):
        assert np.abs(stain_od(rgb, stain) - reference[..., stain]).max() < 1e-6


@pytest.mark.parametrize("h", [0.2, 0.5, 1.5])
def test_h_maxima_equals_scikit_image_on_distance_maps(h):
    rng = np.random.default_rng(1)
    for _ in range(3):
        mask = ndi.gaussian_filter(rng.random((96, 96)), 3) > 0.5
        distance = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.0) * mask
        expected = skimage_h_maxima(distance, h).astype(bool) & (distance > 0)
        assert np.array_equal(h_maxima(distance, h), expected)


def test_separate_discs_are_found_where_they_are():
    discs = [(20, 20, 6), (60, 30, 7), (100, 90, 5), (40, 100, 6)]
    labels = segment_patch(_patch(discs), ClassicalParams(), px_um=0.5)
    found = centroids(labels)
    assert len(found) == len(discs)
    for cx, cy, _ in discs:
        assert np.hypot(found[:, 0] - cx, found[:, 1] - cy).min() < 1.0


def test_touching_discs_are_split_by_the_watershed():
    labels = segment_patch(_patch([(50, 64, 9), (66, 64, 9)]), ClassicalParams(), px_um=0.5)
    assert labels.max() == 2
    # the smoothed neck lies 6-8 px (3-4 µm) below the peaks: h = 5 µm keeps one seed; h = 10 µm, above the
    # peaks themselves, still leaves the object its one seed
    for h_um in (5.0, 10.0):
        assert segment_patch(_patch([(50, 64, 9), (66, 64, 9)]), ClassicalParams(seed_h_um=h_um), px_um=0.5).max() == 1


def test_size_filters_are_in_square_microns():
    discs = [(30, 30, 3), (90, 90, 10)]  # 28 and 314 px²
    rgb = _patch(discs)
    params = ClassicalParams(min_area_um2=10.0, max_area_um2=60.0)
    # at 0.5 µm/px: 7 and 78.5 µm²: both outside [10, 60]; at 0.25 µm/px: 1.8 and 19.6 µm²: the big one stays
    assert segment_patch(rgb, params, px_um=0.5).max() == 0
    kept = segment_patch(rgb, params, px_um=0.25)
    assert kept.max() == 1 and kept[90, 90] == 1


def test_black_pigment_is_not_a_nucleus_and_blank_patch_has_none():
    rgb = _patch([(40, 40, 8)], colour=(25, 25, 25))
    assert segment_patch(rgb, ClassicalParams(), px_um=0.5).max() == 0
    assert segment_patch(rgb, ClassicalParams(dab_max_od=10.0), px_um=0.5).max() == 1
    blank = np.full((64, 64, 3), 255, dtype=np.uint8)
    assert segment_patch(blank, ClassicalParams(), px_um=0.5).max() == 0


def test_holes_are_filled_and_batch_matches_single_patches():
    rgb = _patch([(64, 64, 12)])
    rgb[62:67, 62:67] = PINK  # a pale centre, like a vesicular nucleus
    filled = segment_patch(rgb, ClassicalParams(), px_um=0.5)
    assert filled[64, 64] > 0
    assert segment_patch(rgb, ClassicalParams(fill_holes=False), px_um=0.5)[64, 64] == 0
    batch = np.stack([rgb, _patch([(30, 30, 6)])])
    labels = ClassicalSegmenter(ClassicalParams()).segment(batch, px_um=0.5)
    assert labels.shape == (2, 128, 128) and labels.dtype == np.int32
    assert np.array_equal(labels[1], segment_patch(batch[1], ClassicalParams(), px_um=0.5))
