"""Per-batch measurement: units, tissue, density and the local orientation order."""

from __future__ import annotations

import numpy as np
import pytest

from balnmp_cache.nuclei.measure import measure_batch, tissue_mask, unit_names
from balnmp_cache.slides.tiling import background_ratio


def test_tissue_is_the_complement_of_the_background_rule():
    patches = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    patches[0, :10] = 255  # painted outside the polygon
    patches[1, :, :5] = (178, 176, 179)  # grey glass
    share = 1 - tissue_mask(patches).reshape(4, -1).mean(axis=1)
    assert share == pytest.approx(background_ratio(patches))


def _labelled(angles_deg, size=128, half=(9, 3)):
    """One patch of pink tissue, a white left quarter, and elongated nuclei at the given angles."""
    rgb = np.empty((size, size, 3), dtype=np.uint8)
    rgb[...] = (232, 176, 205)
    rgb[:, : size // 4] = 255
    labels = np.zeros((size, size), dtype=np.int32)
    yy, xx = np.mgrid[0:size, 0:size]
    centres = [(48 + 24 * (k % 3), 20 + 24 * (k // 3)) for k in range(len(angles_deg))]
    for k, ((cx, cy), angle) in enumerate(zip(centres, angles_deg, strict=True), start=1):
        t = np.radians(-angle)
        u, v = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t), -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        labels[(u / half[0]) ** 2 + (v / half[1]) ** 2 <= 1] = k
    return rgb, labels


def test_units_density_and_order():
    rgb, labels = _labelled([30, 32, 28, 31, 29, 30])
    px = measure_batch(rgb[None], labels[None], px_um=None, min_patch_nuclei=3)
    um = measure_batch(rgb[None], labels[None], px_um=0.5, min_patch_nuclei=3)
    assert set(unit_names(False).values()) - {"tissue_px2"} <= set(px.nuclei)
    assert um.nuclei["area_um2"] == pytest.approx(px.nuclei["area_px2"] * 0.25)
    assert um.nuclei["major_axis_um"] == pytest.approx(px.nuclei["major_axis_px"] * 0.5)
    tissue_px = 128 * 96  # the white quarter is not tissue
    assert px.patches["tissue_px2"][0] == tissue_px
    assert um.patches["density_per_mm2"][0] == pytest.approx(6 / (tissue_px * 0.25) * 1e6)
    assert um.patches["orientation_order"][0] > 0.9  # parallel nuclei
    assert np.nanmax(um.nuclei["orientation_deviation_deg"]) < 5


def test_random_orientations_have_order_near_zero_and_few_nuclei_none():
    angles = np.random.default_rng(0).uniform(0, 180, 2000)
    from balnmp_cache.nuclei.measure import _orientation_order

    patch = np.repeat(np.arange(400), 5)  # 400 patches of 5 nuclei: R² alone would be about 1/5
    order, _ = _orientation_order(angles, patch, 400, min_nuclei=3)
    assert abs(np.mean(order)) < 0.03
    order, _ = _orientation_order(angles[:2], np.zeros(2, dtype=np.int64), 1, min_nuclei=3)
    assert np.isnan(order[0])
