"""Tumour-region polygons: BCNB/ASAP JSON and QuPath GeoJSON -> :class:`Region`, clipped to the image.

BCNB files look like ``{"positive": [{"name": "Annotation 0", "vertices": [[x, y], ...]}, ...],
"negative": []}``; as in the official ``cut_tumor_regions.py`` only ``positive`` is read and the
region id is the index in that list, which the official patch names carry.

GeoJSON (QuPath export): a FeatureCollection, a single Feature, a bare list of Features, or a bare
geometry. Every Polygon, and every part of a MultiPolygon, becomes one region; region ids count the
polygons in file order. Other geometry types (points, lines) are skipped. **Holes are ignored**: a
region is its exterior ring, like the BCNB polygons, which have no holes (a debug message counts them).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.errors import SlideError

logger = logging.getLogger(__name__)

__all__ = ["Region", "clip_regions", "find_annotation", "load_regions"]

ANNOTATION_SUFFIXES = (".json", ".geojson")


@dataclass(frozen=True)
class Region:
    """One annotated polygon.

    Attributes:
        region_id: index in the file's ``positive`` list (BCNB) or polygon index (GeoJSON).
        name: the annotation's name (BCNB ``name``; GeoJSON ``properties.name`` or its class name).
        vertices: (K, 2) float64 level-0 x, y.
        origin: level-0 corner of the official bbox crop when it differs from ``vertices.min(0)``:
            :func:`clip_regions` keeps the corner of the *unclipped* polygon (clamped into the image),
            so a polygon running past the right or bottom border keeps the official grid and keys.
    """

    region_id: int
    name: str
    vertices: np.ndarray
    origin: tuple[int, int] | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Region):
            return NotImplemented
        return (
            self.region_id == other.region_id
            and self.name == other.name
            and np.array_equal(self.vertices, other.vertices)
            and self.origin == other.origin
        )


def _vertices(raw: Any, path: Path, where: str) -> np.ndarray:
    try:
        array = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise SlideError(f"annotation {path}: {where} vertices are not numbers ({err})") from err
    if array.ndim != 2 or array.shape[1] < 2 or array.shape[0] == 0:
        raise SlideError(f"annotation {path}: {where} vertices must be a list of [x, y] pairs, got shape {array.shape}")
    array = np.ascontiguousarray(array[:, :2])
    if not np.isfinite(array).all():
        raise SlideError(f"annotation {path}: {where} has non-finite vertex coordinates")
    return array


def _bcnb_regions(data: dict[str, Any], path: Path) -> list[Region]:
    positive = data["positive"]
    if not isinstance(positive, list):
        raise SlideError(f"annotation {path}: 'positive' must be a list of polygons, got {type(positive).__name__}")
    regions = []
    for index, entry in enumerate(positive):
        if not isinstance(entry, dict) or "vertices" not in entry:
            raise SlideError(f"annotation {path}: positive[{index}] has no 'vertices' list")
        name = str(entry.get("name", f"Annotation {index}"))
        regions.append(Region(index, name, _vertices(entry["vertices"], path, f"positive[{index}]")))
    return regions


def _feature_name(feature: dict[str, Any], index: int) -> str:
    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        return f"Feature {index}"
    if properties.get("name"):
        return str(properties["name"])
    classification = properties.get("classification")
    if isinstance(classification, dict) and classification.get("name"):
        return str(classification["name"])
    return f"Feature {index}"


def _geojson_regions(data: Any, path: Path) -> list[Region]:
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, dict) and data.get("type") in {"Polygon", "MultiPolygon"}:
        features = [{"type": "Feature", "geometry": data, "properties": {}}]
    else:
        features = data
    if not isinstance(features, list):
        raise SlideError(f"annotation {path}: 'features' must be a list")
    regions: list[Region] = []
    holes = 0
    for index, feature in enumerate(features):
        if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
            raise SlideError(f"annotation {path}: feature {index} has no geometry object")
        geometry = feature["geometry"]
        kind = geometry.get("type")
        coordinates = geometry.get("coordinates")
        if kind == "Polygon":
            polygons = [coordinates]
        elif kind == "MultiPolygon":
            polygons = coordinates
        else:
            logger.debug("annotation %s: feature %d is a %s, not a polygon; skipped", path, index, kind)
            continue
        if not isinstance(polygons, list):
            raise SlideError(f"annotation {path}: feature {index} has malformed {kind} coordinates")
        name = _feature_name(feature, index)
        for part, rings in enumerate(polygons):
            if not isinstance(rings, list) or not rings:
                raise SlideError(f"annotation {path}: feature {index} has a polygon without rings")
            holes += len(rings) - 1
            vertices = _vertices(rings[0], path, f"feature {index}")
            if len(vertices) > 1 and np.array_equal(vertices[0], vertices[-1]):
                vertices = vertices[:-1]  # GeoJSON rings repeat the first vertex at the end
            label = name if len(polygons) == 1 else f"{name} #{part}"
            regions.append(Region(len(regions), label, vertices))
    if holes:
        logger.debug("annotation %s: %d polygon holes ignored (regions are exterior rings)", path, holes)
    return regions


def load_regions(path: Path) -> list[Region]:
    """Read the tumour polygons of one slide.

    Args:
        path: a BCNB/ASAP ``.json`` or a GeoJSON file.

    Returns:
        The regions in file order (may be empty).

    Raises:
        SlideError: the file is missing, not JSON, or neither format; the message names the file
            and the problem.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise SlideError(f"annotation file {path} does not exist") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SlideError(f"annotation {path} is not valid JSON: {err}") from err
    if isinstance(data, dict) and "positive" in data:
        return _bcnb_regions(data, path)
    if isinstance(data, list) or (isinstance(data, dict) and "type" in data):
        return _geojson_regions(data, path)
    keys = ", ".join(sorted(data)) if isinstance(data, dict) else type(data).__name__
    raise SlideError(
        f"annotation {path} is neither BCNB JSON (a 'positive' list) nor GeoJSON (a 'type' key); found: {keys}"
    )


def _clip_polygon(vertices: np.ndarray, width: int, height: int) -> np.ndarray:
    """Sutherland-Hodgman clipping of a polygon to the rectangle [0, width] x [0, height]."""
    points = [tuple(p) for p in vertices]
    edges = ((0, 0.0, True), (0, float(width), False), (1, 0.0, True), (1, float(height), False))
    for axis, bound, is_lower in edges:
        if not points:
            break

        def inside(p: tuple[float, float], axis: int = axis, bound: float = bound, is_lower: bool = is_lower) -> bool:
            return p[axis] >= bound if is_lower else p[axis] <= bound

        clipped = []
        for index, current in enumerate(points):
            previous = points[index - 1]
            if inside(current) != inside(previous):
                t = (bound - previous[axis]) / (current[axis] - previous[axis])
                crossing = [previous[0] + t * (current[0] - previous[0]), previous[1] + t * (current[1] - previous[1])]
                crossing[axis] = bound
                clipped.append(tuple(crossing))
            if inside(current):
                clipped.append(current)
        points = clipped
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def clip_regions(regions: list[Region], *, width: int, height: int) -> tuple[list[Region], list[str]]:
    """Clip polygons to the image (upstream issue #6: vertices < 0 or past the border).

    Vertices are rounded to integers (the official code uses integer vertices). A polygon with a
    vertex outside [0, width] x [0, height] is intersected with that rectangle (Sutherland-Hodgman);
    polygons inside it are returned unchanged apart from rounding. A region with fewer than 3 vertices,
    or whose bounding-box crop (max row/column excluded, as upstream) is empty, is dropped.

    Args:
        regions: as loaded by :func:`load_regions`.
        width: level-0 image width in pixels.
        height: level-0 image height in pixels.

    Returns:
        (kept regions with their original ids, one warning line per clipped or dropped region).

    Raises:
        SlideError: no region at all ("the annotation has no polygon"), or none usable, each one's
            reason named (e.g. "a polygon needs at least 3 vertices: region 0 ('A') has 2").
    """
    if not regions:
        raise SlideError("the annotation has no polygon: draw at least one tumour region, or remove the annotation "
                         "file to tile the detected tissue instead")
    kept: list[Region] = []
    warnings: list[str] = []
    reasons: list[str] = []
    for region in regions:
        label = f"region {region.region_id} ({region.name!r})"
        if len(region.vertices) < 3:
            reasons.append(f"a polygon needs at least 3 vertices: {label} has {len(region.vertices)}")
            warnings.append(f"{label} dropped: {reasons[-1]}")
            continue
        vertices = np.rint(region.vertices)
        outside = (vertices[:, 0] < 0) | (vertices[:, 0] > width) | (vertices[:, 1] < 0) | (vertices[:, 1] > height)
        if outside.any():
            vertices = np.rint(_clip_polygon(vertices, width, height))
        if len(vertices) < 3:
            reasons.append(f"{label} lies outside the {width}x{height} image")
            warnings.append(f"{label} dropped: no area inside the {width}x{height} image")
            continue
        span = vertices.max(axis=0) - vertices.min(axis=0)
        if span[0] < 1 or span[1] < 1 or math.isclose(float(_area(vertices)), 0.0):
            reasons.append(f"{label} has zero area inside the {width}x{height} image")
            warnings.append(f"{label} dropped: zero area inside the {width}x{height} image")
            continue
        if outside.any():
            warnings.append(
                f"{label}: {int(outside.sum())} of {len(outside)} vertices outside the {width}x{height} image; clipped"
            )
        origin = None
        if outside.any():
            raw = np.rint(region.vertices).min(axis=0)
            origin = (int(min(max(raw[0], 0), width)), int(min(max(raw[1], 0), height)))
        kept.append(Region(region.region_id, region.name, vertices, origin))
    if not kept:
        raise SlideError("no usable tumour region: " + "; ".join(reasons))
    return kept, warnings


def _area(vertices: np.ndarray) -> float:
    x, y = vertices[:, 0], vertices[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def find_annotation(slide_path: Path) -> Path | None:
    """The annotation beside a slide: ``<slide id>.json`` or ``<slide id>.geojson``, else ``None``.

    Unlike the official ``wsi_path.replace('jpg', 'json')``, only the file name changes, so folder
    names containing ``jpg`` are harmless.
    """
    from balnmp_cache.slides.readers import slide_id_for_path

    slide_path = Path(slide_path)
    stem = slide_id_for_path(slide_path)
    for suffix in ANNOTATION_SUFFIXES:
        candidate = slide_path.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    return None
