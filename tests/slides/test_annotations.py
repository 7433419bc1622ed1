"""BCNB JSON and GeoJSON parsing, clipping (upstream issue #6), annotation lookup."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from balnmp_cache.errors import SlideError
from balnmp_cache.slides import clip_regions, find_annotation, load_regions
from balnmp_cache.slides.annotations import Region
from tests.slides.conftest import write_bcnb_json


def test_bcnb_json(tmp_path: Path) -> None:
    path = write_bcnb_json(tmp_path / "1.json", [[[0, 0], [10, 0], [10, 10]], [[5, 5], [20, 5], [20, 30], [5, 30]]])
    regions = load_regions(path)
    assert [r.region_id for r in regions] == [0, 1]
    assert regions[1].name == "Annotation 1"
    assert regions[1].vertices.dtype == np.float64 and regions[1].vertices.shape == (4, 2)
    np.testing.assert_array_equal(regions[0].vertices, [[0, 0], [10, 0], [10, 10]])


def test_bcnb_negative_list_is_ignored_and_empty_positive_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "2.json"
    path.write_text(json.dumps({"positive": [], "negative": [{"name": "n", "vertices": [[0, 0], [1, 1], [2, 0]]}]}))
    assert load_regions(path) == []


def _feature(coordinates: list, kind: str = "Polygon", properties: dict | None = None) -> dict:
    return {"type": "Feature", "geometry": {"type": kind, "coordinates": coordinates}, "properties": properties or {}}


def test_geojson_feature_collection_multipolygon_and_holes(tmp_path: Path) -> None:
    square = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    hole = [[2, 2], [4, 2], [4, 4], [2, 2]]
    collection = {
        "type": "FeatureCollection",
        "features": [
            _feature([square, hole], properties={"classification": {"name": "Tumor"}}),
            _feature([[3, 3]], kind="Point"),
            _feature([[[[20, 20], [30, 20], [30, 30], [20, 20]]], [[[40, 40], [50, 40], [50, 50], [40, 40]]]],
                     kind="MultiPolygon", properties={"name": "pair"}),
        ],
    }
    path = tmp_path / "s.geojson"
    path.write_text(json.dumps(collection))
    regions = load_regions(path)
    assert [(r.region_id, r.name) for r in regions] == [(0, "Tumor"), (1, "pair #0"), (2, "pair #1")]
    np.testing.assert_array_equal(regions[0].vertices, square[:-1])  # closing vertex dropped, hole ignored
    assert regions[2].vertices.shape == (3, 2)


def test_geojson_bare_list_single_feature_and_geometry(tmp_path: Path) -> None:
    ring = [[0, 0], [8, 0], [8, 8], [0, 0]]
    for index, data in enumerate([[_feature([ring])], _feature([ring]), {"type": "Polygon", "coordinates": [ring]}]):
        path = tmp_path / f"{index}.geojson"
        path.write_text(json.dumps(data))
        regions = load_regions(path)
        assert len(regions) == 1 and regions[0].vertices.shape == (3, 2)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"regions": []}), "neither BCNB JSON"),
        (json.dumps({"positive": {"a": 1}}), "'positive' must be a list"),
        (json.dumps({"positive": [{"name": "x"}]}), r"positive\[0\] has no 'vertices'"),
        (json.dumps({"positive": [{"vertices": [["a", "b"]]}]}), "not numbers"),
        (json.dumps({"positive": [{"vertices": [1, 2, 3]}]}), r"\[x, y\] pairs"),
        (json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature"}]}), "feature 0 has no geometry"),
    ],
)
def test_malformed_files_name_the_file_and_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SlideError, match=problem) as info:
        load_regions(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_slide_error(tmp_path: Path) -> None:
    with pytest.raises(SlideError, match="does not exist"):
        load_regions(tmp_path / "absent.json")


def test_clip_regions_intersects_with_the_image() -> None:
    regions = [
        Region(0, "inside", np.array([[1.2, 2.0], [50.0, 2.0], [50.0, 40.0]])),
        Region(1, "right", np.array([[250.0, 20.0], [340.0, 20.0], [340.0, 90.0], [250.0, 90.0]])),
        Region(2, "corner", np.array([[-20.0, 150.0], [60.0, 150.0], [60.0, 230.0]])),
        Region(3, "outside", np.array([[400.0, 10.0], [500.0, 10.0], [450.0, 60.0]])),
        Region(4, "line", np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]])),
    ]
    kept, warnings = clip_regions(regions, width=300, height=200)
    assert [r.region_id for r in kept] == [0, 1, 2]
    np.testing.assert_array_equal(kept[0].vertices, [[1, 2], [50, 2], [50, 40]])  # rounded only
    assert {tuple(v) for v in kept[1].vertices.tolist()} == {(250, 20), (300, 20), (300, 90), (250, 90)}
    assert {tuple(v) for v in kept[2].vertices.tolist()} == {(0, 150), (60, 150), (60, 200), (30, 200), (0, 170)}
    assert len(warnings) == 4
    assert any("region 1 ('right')" in w and "clipped" in w for w in warnings)
    assert any("region 3 ('outside') dropped" in w for w in warnings)
    assert any("region 4 ('line') dropped: zero area" in w for w in warnings)


def test_find_annotation_beside_the_slide_even_in_a_jpg_folder(tmp_path: Path) -> None:
    folder = tmp_path / "jpg_slides"  # the official replace('jpg', 'json') would break here
    folder.mkdir()
    (folder / "5.jpg").write_bytes(b"")
    assert find_annotation(folder / "5.jpg") is None
    (folder / "5.geojson").write_text("[]")
    assert find_annotation(folder / "5.jpg") == folder / "5.geojson"
    (folder / "5.json").write_text("{}")
    assert find_annotation(folder / "5.jpg") == folder / "5.json"
    (folder / "6.ome.tif").write_bytes(b"")
    (folder / "6.json").write_text("{}")
    assert find_annotation(folder / "6.ome.tif") == folder / "6.json"


def test_clipping_keeps_the_official_crop_corner_of_a_polygon_past_the_bottom_border():
    from balnmp_cache.slides import region_candidates

    # the vertex (50, 1500) lies below a 1000 x 1000 image; clipping moves the polygon's min x to ~68,
    # but the official crop (and so the patch keys) start at the unclipped corner x = 50
    region = Region(0, "A", np.array([[300.0, 100.0], [900.0, 150.0], [50.0, 1500.0]]))
    (clipped,), warnings = clip_regions([region], width=1000, height=1000)
    assert warnings and clipped.vertices[:, 0].min() > 50
    assert clipped.origin == (50, 100)
    cands = region_candidates([clipped], slide_id="7", patch_px=256, patch_level0_px=256, read_level=0, read_px=256)
    assert all((x - 50) % 256 == 0 and (y - 100) % 256 == 0 for x, y in cands.level0_xy.tolist())
    assert all(k.startswith("patches/7/7_0_") for k in cands.patch_key)
