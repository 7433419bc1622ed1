"""Slide geometry: the official patch rule, polygon sizing, high-grade fields, pyramid levels."""

from __future__ import annotations

import numpy as np
import pytest

from balnmp_cache.demo.layout import official_patches, plan_slide, rasterise
from balnmp_cache.demo.pyramid import pyramid_downsamples


def test_official_patches_on_a_square_and_a_clipped_polygon() -> None:
    square = np.array([[0, 0], [512, 0], [512, 512], [0, 512]])
    assert sorted(official_patches([square], 1000, 1000)) == [(0, 0, 0), (0, 0, 256), (0, 256, 0), (0, 256, 256)]
    # A triangle keeps only patches at least 70% inside: the diagonal ones are dropped.
    triangle = np.array([[0, 0], [1024, 0], [0, 1024]])
    kept = official_patches([triangle], 2000, 2000)
    assert (0, 0, 0) in kept and (0, 768, 0) not in kept and (0, 512, 256) not in kept
    # Vertices past the border are clipped to the image; a polygon entirely outside yields nothing.
    overhanging = square - 300
    assert official_patches([overhanging], 1000, 1000) == []
    assert official_patches([square + 200], 600, 600) == [(0, 200, 200)]


def test_rasterise_scales_and_offsets() -> None:
    square = np.array([[100, 100], [300, 100], [300, 300], [100, 300]])
    full = rasterise([square], (400, 400))
    half = rasterise([square], (200, 200), scale=0.5)
    shifted = rasterise([square], (200, 200), offset=(150, 150))
    assert full[200, 200] and not full[50, 50]
    assert half[100, 100] and not half[10, 10]
    assert shifted[0, 0] and shifted[150, 150] and not shifted[160, 160]
    assert abs(int(full.sum()) - 201 * 201) < 500


@pytest.mark.parametrize("n_target", [10, 24, 60])
def test_plan_slide_hits_the_patch_target(n_target: int) -> None:
    layout = plan_slide(np.random.default_rng([7, n_target]), n_target=n_target, high_grade_fraction=0.3,
                        overhang=False)
    assert 10 <= layout.n_patches <= 69
    assert abs(layout.n_patches - n_target) <= 0.2 * n_target + 1
    assert layout.n_patches == len(official_patches(layout.regions, layout.width, layout.height))
    for poly in layout.regions:
        assert poly.dtype == np.int64 and poly.shape[1] == 2
        assert poly[:, 0].min() >= 0 and poly[:, 1].min() >= 0
        assert poly[:, 0].max() < layout.width and poly[:, 1].max() < layout.height
    # High-grade fields cover roughly the wished share of the tumour.
    tumour = rasterise(layout.regions, (layout.height // 4, layout.width // 4), scale=0.25)
    yy, xx = np.mgrid[: tumour.shape[0], : tumour.shape[1]] * 4
    discs = np.zeros_like(tumour)
    for x, y, r in layout.fields:
        discs |= (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    share = (discs & tumour).sum() / tumour.sum()
    assert 0.15 < share < 0.45


def test_overhang_puts_vertices_past_the_left_border() -> None:
    layout = plan_slide(np.random.default_rng(3), n_target=20, high_grade_fraction=0.0, overhang=True)
    assert layout.regions[0][:, 0].min() < 0
    assert len(layout.fields) == 0
    assert layout.n_patches >= 10


def test_pyramid_downsamples() -> None:
    assert pyramid_downsamples(2000, 1800) == [1, 4, 16]
    assert pyramid_downsamples(600, 500) == [1, 4]
    assert pyramid_downsamples(20000, 20000) == [1, 4, 16, 64, 256]
