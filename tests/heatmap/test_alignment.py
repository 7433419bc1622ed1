"""Overlay cells land exactly on their patches: a checkerboard slide whose patches are known, at several downsamples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from balnmp_cache.heatmap.canvas import canvas_for, layout_coords, patch_index
from balnmp_cache.heatmap.geojson import write_geojson
from balnmp_cache.heatmap.images import SlideImages
from balnmp_cache.heatmap.render import Scale, lookup_table, overlay

from .conftest import DARK, GLASS, LIGHT

MAX_PX = [1000, 731, 250, 97]  # downsample 1, 1.37, 4 (the TIFF's second level), 10.3


def _expected_index(canvas, coords: np.ndarray, patch_px: int) -> np.ndarray:
    """Brute force: the patch whose square holds each pixel centre (the patches do not overlap)."""
    xs, ys = canvas.centres_level0()
    out = np.full((canvas.height_px, canvas.width_px), -1)
    for i, (x, y) in enumerate(coords.tolist()):
        inside_x, inside_y = (xs >= x) & (xs < x + patch_px), (ys >= y) & (ys < y + patch_px)
        out[np.ix_(inside_y, inside_x)] = i
    return out


@pytest.mark.parametrize("max_px", MAX_PX)
def test_every_pixel_centre_gets_the_patch_whose_square_holds_it(checker_slide, max_px):
    coords, patch_px = checker_slide["coords"], checker_slide["patch_px"]
    canvas = canvas_for((0, 0), (checker_slide["width"], checker_slide["height"]), max_px)
    assert max(canvas.width_px, canvas.height_px) == min(max_px, 1000)
    index = patch_index(canvas, coords, patch_px)
    np.testing.assert_array_equal(index, _expected_index(canvas, coords, patch_px))
    assert (index >= 0).any(axis=0)[-1] and (index >= 0).any(axis=1)[-1]  # the partial column and row are drawn
    assert set(np.unique(index)) == {-1, *range(len(coords))}  # every patch has at least one pixel


@pytest.mark.parametrize("kind", ["png", "tiff"])
@pytest.mark.parametrize("max_px", MAX_PX)
def test_overlay_cells_sit_on_the_squares_the_slide_shows(checker_slide, kind, max_px):
    """The slide read back by a real reader and the overlay agree at every pixel the slide shows unblended.

    A pixel of the thumbnail is unblended when its colour is one of the slide's three (dark, light, glass);
    resampling blends only pixels cut by a square's edge. A shift of the overlay by one pixel against
    the thumbnail would put unblended pixels into the neighbouring cell and fail.
    """
    coords, patch_px, odd = checker_slide["coords"], checker_slide["patch_px"], checker_slide["parity"]
    canvas = canvas_for((0, 0), (checker_slide["width"], checker_slide["height"]), max_px)
    index = patch_index(canvas, coords, patch_px)
    with SlideImages({"source_path": str(checker_slide[kind])}) as images:
        assert images.dimensions() == (checker_slide["width"], checker_slide["height"])
        thumbnail = images.thumbnail(canvas, coords, np.array([""] * len(coords)), patch_px)
    assert thumbnail is not None and thumbnail.shape == (canvas.height_px, canvas.width_px, 3)
    scale = Scale("raw", "viridis", "parity", low=0.0, high=1.0)
    rgba, _ = overlay(index, scale.unit(odd.astype(float)), lookup_table("viridis"), thumbnail, 0.5)
    shown = {level: (np.abs(thumbnail.astype(int) - level) < 20).all(axis=-1) for level in (DARK, LIGHT, GLASS)}
    unblended = shown[DARK] | shown[LIGHT] | shown[GLASS]
    assert unblended.mean() > 0.6
    lut = lookup_table("viridis")
    opaque = rgba[..., 3] == 255
    cell_dark = (rgba[..., :3] == lut[255]).all(axis=-1) & opaque
    cell_light = (rgba[..., :3] == lut[0]).all(axis=-1) & opaque
    np.testing.assert_array_equal(cell_dark[unblended], shown[DARK][unblended])
    np.testing.assert_array_equal(cell_light[unblended], shown[LIGHT][unblended])
    np.testing.assert_array_equal(~opaque[unblended], shown[GLASS][unblended])


def test_region_offset_coords_are_laid_out_without_overlap():
    coords = np.array([[0, 0], [64, 0], [0, 0], [0, 64]])  # two regions, both starting at their crop's corner
    laid = layout_coords(coords, np.array([0, 0, 1, 1]), 64, "region_offset")
    assert len({tuple(c) for c in laid.tolist()}) == 4
    np.testing.assert_array_equal(layout_coords(coords, np.array([0, 0, 1, 1]), 64, "level0"), coords)


def test_geojson_squares_are_the_cached_coordinates(checker_slide, tmp_path):
    coords, patch_px = checker_slide["coords"], checker_slide["patch_px"]
    keys = np.array([f"patches/s/s_0_{x}_{y}.jpg" for x, y in coords.tolist()], dtype=object)
    score = np.linspace(-1, 1, len(coords))
    score[3] = np.nan
    path = write_geojson(tmp_path / "s.geojson", slide_id="s", level0_xy=coords, patch_level0_px=patch_px, keys=keys,
                         measurements={"attention_logit": score, "percentile": np.arange(len(coords), dtype=float)})
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == len(coords)
    for feature, (x, y), key, value in zip(data["features"], coords.tolist(), keys, score, strict=True):
        (ring,) = feature["geometry"]["coordinates"]
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        assert ring == [[x, y], [x + patch_px, y], [x + patch_px, y + patch_px], [x, y + patch_px], [x, y]]
        props = feature["properties"]
        assert props["objectType"] == "detection" and props["name"] == key
        if np.isnan(value):
            assert "attention_logit" not in props["measurements"]  # JSON has no NaN: the measurement is left out
        else:
            assert props["measurements"]["attention_logit"] == pytest.approx(value, rel=1e-5, abs=1e-6)
    ids = [f["id"] for f in data["features"]]
    assert len(set(ids)) == len(ids)
    again = json.loads(write_geojson(tmp_path / "t.geojson", slide_id="s", level0_xy=coords, patch_level0_px=patch_px,
                                     keys=keys, measurements={}).read_text())
    assert [f["id"] for f in again["features"]] == ids  # stable ids: the same detections on re-export


def test_on_a_real_slide_each_cell_shows_what_its_patch_crop_shows():
    """CMU-1-Small-Region.svs: a cell's thumbnail pixels and its patch read back from level 0 agree in colour."""
    from tests.conftest import shared_file

    from .conftest import lattice

    svs = shared_file("wsi/aperio_svs/CMU-1-Small-Region.svs")
    patch_px = 256
    with SlideImages({"source_path": str(svs)}) as images:
        width, height = images.dimensions()
        coords = lattice((13, 29), (width - 13) // patch_px, (height - 29) // patch_px, patch_px)
        canvas = canvas_for((0, 0), (width, height), 600)
        index = patch_index(canvas, coords, patch_px)
        thumbnail = images.thumbnail(canvas, coords, None, patch_px).astype(float)
        crops = np.stack(images.crops(coords, [""] * len(coords), patch_px, 32)).astype(float)
    cell_mean = np.array([thumbnail[index == i].mean(axis=0) for i in range(len(coords))])  # (N, 3)
    crop_mean = crops.mean(axis=(1, 2))  # (N, 3)
    aligned = np.corrcoef(cell_mean[:, 1], crop_mean[:, 1])[0, 1]
    shifted = np.corrcoef(cell_mean[1:, 1], crop_mean[:-1, 1])[0, 1]  # each cell against its left neighbour
    assert aligned > 0.99 and aligned > shifted + 0.05, (aligned, shifted)
    assert np.abs(cell_mean - crop_mean).max() < 2.5  # grey levels of 0-255; a 1-pixel shift gives 3.4
