"""Slide geometry of the demo cohort: tissue cores, tumour polygons, high-grade fields, official patch count.

A slide holds one to three elongated biopsy cores on a near-white background. Each core contains one or more
tumour polygons (the annotations written to ``<id>.json``) laid out along its axis, with non-tumour tissue
between and around them. The polygons are sized so that the official BALNMP tiling rule (a non-overlapping
256-px grid inside each polygon's bounding box, pixels outside the polygon painted white, a patch dropped when
>= 30% of its channel values are 255) yields the patient's target number of patches.

All coordinates are level-0 pixels, x to the right and y down, as in BCNB's annotation JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from balnmp_cache.demo.planted import FIELD_RADIUS_PX, PATCH_PX

__all__ = ["SlideLayout", "official_patches", "plan_slide", "rasterise"]

_MAX_WHITE_RATIO = 0.3
_EXPECTED_YIELD = 0.7  # kept patches per 256x256 of polygon area, a first guess refined by iteration


@dataclass(frozen=True)
class SlideLayout:
    """Geometry of one synthetic slide.

    Attributes:
        width: level-0 width in pixels.
        height: level-0 height in pixels.
        cores: outline of each tissue core, (V, 2) float arrays of x, y.
        regions: tumour polygons as written to the annotation JSON, (V, 2) int64 arrays of x, y; vertices may
            lie outside the image (negative or >= width/height), like real BCNB annotations.
        fields: high-grade fields, (F, 3) int64 rows of centre x, centre y, radius.
        n_patches: patches the official tiling rule keeps (regions clipped to the image).
    """

    width: int
    height: int
    cores: tuple[np.ndarray, ...]
    regions: tuple[np.ndarray, ...]
    fields: np.ndarray
    n_patches: int


def rasterise(polygons: list[np.ndarray] | tuple[np.ndarray, ...], shape: tuple[int, int], *,
              offset: tuple[float, float] = (0.0, 0.0), scale: float = 1.0) -> np.ndarray:
    """Fill polygons into a boolean mask.

    Args:
        polygons: (V, 2) arrays of x, y in level-0 pixels.
        shape: (height, width) of the mask.
        offset: level-0 x, y of the mask's top-left pixel.
        scale: mask pixels per level-0 pixel.

    Returns:
        (height, width) bool mask, True inside any polygon (boundary included).
    """
    image = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(image)
    for poly in polygons:
        points = (np.asarray(poly, dtype=np.float64) - offset) * scale
        draw.polygon([(float(x), float(y)) for x, y in points], fill=1)
    return np.asarray(image, dtype=bool)


def official_patches(regions: list[np.ndarray] | tuple[np.ndarray, ...], width: int, height: int, *,
                     patch_px: int = PATCH_PX) -> list[tuple[int, int, int]]:
    """Patches the official BALNMP rule keeps, with each polygon clipped to the image.

    Mirrors ``cut_tumor_regions.py`` + ``cut_patches.py``: the crop is ``[min_x, max_x) x [min_y, max_y)``,
    clipped here to the image; pixels outside the polygon count as pure white, as does the padding up to a
    multiple of ``patch_px``; a patch is dropped when >= 30% of it is white. Tissue inside a polygon is never
    pure white in the demo slides, so this count is exact for them.

    Returns:
        (region index, level-0 x, level-0 y) of each kept patch's top-left corner.
    """
    kept: list[tuple[int, int, int]] = []
    for index, poly in enumerate(regions):
        x0 = max(int(poly[:, 0].min()), 0)
        y0 = max(int(poly[:, 1].min()), 0)
        x1 = min(int(poly[:, 0].max()), width)
        y1 = min(int(poly[:, 1].max()), height)
        if x1 <= x0 or y1 <= y0:
            continue
        rows = -(-(y1 - y0) // patch_px)
        cols = -(-(x1 - x0) // patch_px)
        mask = np.zeros((rows * patch_px, cols * patch_px), dtype=bool)
        mask[: y1 - y0, : x1 - x0] = rasterise([poly], (y1 - y0, x1 - x0), offset=(x0, y0))
        inside = mask.reshape(rows, patch_px, cols, patch_px).sum(axis=(1, 3))
        white = patch_px * patch_px - inside
        for r, c in zip(*np.nonzero(white < _MAX_WHITE_RATIO * patch_px * patch_px), strict=True):
            kept.append((index, x0 + int(c) * patch_px, y0 + int(r) * patch_px))
    return kept


def _star(unit: dict[str, np.ndarray], a: float, b: float, angle: float, centre: np.ndarray, *,
          power: float = 2.0) -> np.ndarray:
    """Outline of a superellipse (``power`` 2: an ellipse) with semi-axes (a, b), radius modulated by harmonics."""
    theta = unit["theta"]
    radius = 1.0 + unit["jitter"]
    for k, (amp, phase) in enumerate(zip(unit["amp"], unit["phase"], strict=True), start=2):
        radius = radius + amp * np.cos(k * theta + phase)
    cos, sin = np.cos(theta), np.sin(theta)
    x = a * radius * np.sign(cos) * np.abs(cos) ** (2 / power)
    y = b * radius * np.sign(sin) * np.abs(sin) ** (2 / power)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([centre[0] + c * x - s * y, centre[1] + s * x + c * y], axis=1)


def _unit_shape(rng: np.random.Generator, n_vertices: int, roughness: float, smooth: float) -> dict[str, np.ndarray]:
    theta = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
    return {
        "theta": theta,
        "jitter": rng.normal(0.0, roughness, n_vertices),
        "amp": rng.normal(0.0, smooth, 4) / np.sqrt(np.arange(1, 5)),
        "phase": rng.uniform(0, 2 * np.pi, 4),
    }


@dataclass(frozen=True)
class _Draws:
    """The random shape of one slide, drawn once; only its scale is searched."""

    core_of: np.ndarray  # the core each region sits in
    weights: np.ndarray  # each region's share of the tumour area
    aspect: np.ndarray
    tilt: np.ndarray
    region_units: list[dict[str, np.ndarray]]
    core_units: list[dict[str, np.ndarray]]
    core_tilt: np.ndarray
    gap: np.ndarray
    end_margin: np.ndarray
    side: np.ndarray
    row_gap: np.ndarray
    shift: np.ndarray
    pad: np.ndarray
    overhang_px: float


def _draw(rng: np.random.Generator) -> _Draws:
    n_regions = int(rng.choice([1, 2, 3, 4], p=[0.45, 0.30, 0.17, 0.08]))
    n_cores = int(rng.integers((n_regions + 1) // 2, min(n_regions, 3) + 1))  # at most two polygons per core
    core_of = np.concatenate([np.arange(n_cores), rng.integers(0, n_cores, n_regions - n_cores)]).astype(int)
    core_of.sort()
    return _Draws(
        core_of=core_of,
        weights=rng.dirichlet(np.full(n_regions, 2.5)),
        aspect=rng.uniform(1.1, 2.0, n_regions),
        tilt=rng.uniform(-0.25, 0.25, n_regions),
        region_units=[_unit_shape(rng, int(rng.integers(18, 31)), 0.015, 0.07) for _ in range(n_regions)],
        core_units=[_unit_shape(rng, 160, 0.012, 0.05) for _ in range(n_cores)],
        core_tilt=rng.uniform(-0.12, 0.12, n_cores),
        gap=rng.uniform(0.15, 0.45, n_regions),
        end_margin=rng.uniform(0.1, 0.35, n_cores),
        side=rng.uniform(1.08, 1.25, n_cores),
        row_gap=rng.uniform(60, 200, n_cores),
        shift=rng.uniform(-1, 1, n_cores),
        pad=rng.uniform(40, 120, 2),
        overhang_px=float(rng.uniform(25, 90)),
    )


def _arrange(d: _Draws, area: np.ndarray, overhang: bool) -> tuple[int, int, list[np.ndarray], list[np.ndarray]]:
    """Regions of the given areas laid end to end along their cores, the cores stacked: (width, height, cores,
    regions), shifted so that everything lies inside the image (but for the overhang)."""
    n_cores = len(d.core_units)
    b = np.sqrt(area / (np.pi * d.aspect))
    a = d.aspect * b
    cores: list[np.ndarray] = []
    placed: dict[int, np.ndarray] = {}  # region index -> outline; every region sits in one core
    half_lengths = []
    for c in range(n_cores):
        members = np.nonzero(d.core_of == c)[0]
        widths = 2 * a[members] + d.gap[members] * b[members]
        half_lengths.append(widths.sum() / 2 + d.end_margin[c] * b[members].max() + 30)
    a_max = max(half_lengths)
    y_cursor = 0.0
    for c in range(n_cores):
        members = np.nonzero(d.core_of == c)[0]
        b_core = b[members].max() * d.side[c] + 30
        centre = np.array([a_max + d.shift[c] * (a_max - half_lengths[c]), y_cursor + b_core])
        y_cursor += 2 * b_core + d.row_gap[c]
        cos, sin = math.cos(d.core_tilt[c]), math.sin(d.core_tilt[c])
        rot = np.array([[cos, -sin], [sin, cos]])
        x = -half_lengths[c] + d.end_margin[c] * b[members].max() + 30
        for r in members:
            local = np.array([x + a[r], 0.0])
            x += 2 * a[r] + d.gap[r] * b[r]
            placed[int(r)] = _star(d.region_units[r], a[r], b[r], d.core_tilt[c] + d.tilt[r], centre + rot @ local)
        cores.append(_star(d.core_units[c], half_lengths[c], b_core, d.core_tilt[c], centre, power=3.5))
    regions = [placed[r] for r in range(len(d.region_units))]
    origin = np.concatenate(cores + regions).min(axis=0) - d.pad
    if overhang:
        origin[0] = regions[0][:, 0].min() + d.overhang_px
    cores = [poly - origin for poly in cores]
    regions = [np.rint(poly - origin).astype(np.int64) for poly in regions]
    width = math.ceil(np.concatenate(cores + regions)[:, 0].max() + d.pad[0])
    height = math.ceil(np.concatenate(cores + regions)[:, 1].max() + d.pad[1])
    return width, height, cores, regions


def plan_slide(rng: np.random.Generator, *, n_target: int, high_grade_fraction: float, overhang: bool,
               min_patches: int = 10, max_patches: int = 69) -> SlideLayout:
    """Draw the geometry of one slide whose polygons yield about ``n_target`` official patches.

    Args:
        rng: the patient's geometry stream.
        n_target: wished number of kept patches; the result lies within 15% of it, and within
            ``[min_patches, max_patches]``.
        high_grade_fraction: share of the tumour area to cover with high-grade fields (0-1).
        overhang: make the first polygon run past the left image border, as some BCNB annotations do.

    Returns:
        The slide's layout.
    """
    draws = _draw(rng)
    lo = max(min_patches, math.floor(0.85 * n_target))
    hi = min(max_patches, math.ceil(1.15 * n_target))
    scale, best = 1.0, None
    for attempt in range(30):
        width, height, cores, regions = _arrange(draws, scale * n_target * PATCH_PX * PATCH_PX / _EXPECTED_YIELD
                                                 * draws.weights, overhang)
        n = len(official_patches(regions, width, height))
        if min_patches <= n <= max_patches and (best is None or abs(n - n_target) < abs(best[0] - n_target)):
            best = (n, width, height, cores, regions)
        if lo <= n <= hi:
            break
        # The count is a step function of the scale: damp the steps more and more so it cannot oscillate.
        damping = 0.9 if attempt < 10 else 0.4
        scale *= float(np.clip((n_target / max(n, 1)) ** damping, 0.6, 1.6))
    if best is None:
        raise RuntimeError(f"demo slide layout found no size with {min_patches}-{max_patches} patches")
    n, width, height, cores, regions = best
    fields = _place_fields(rng, regions, width, height, high_grade_fraction)
    return SlideLayout(width=width, height=height, cores=tuple(cores), regions=tuple(regions), fields=fields,
                       n_patches=n)


def _place_fields(rng: np.random.Generator, regions: list[np.ndarray], width: int, height: int,
                  fraction: float) -> np.ndarray:
    """Drop discs inside the tumour until they cover about ``fraction`` of its area (checked at 1/8 scale)."""
    step = 8
    shape = (height // step + 1, width // step + 1)
    tumour = rasterise(regions, shape, scale=1 / step)
    total = int(tumour.sum())
    ys, xs = np.nonzero(tumour)
    covered = np.zeros(shape, dtype=bool)
    fields: list[tuple[int, int, int]] = []
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    current, misses = 0.0, 0
    for _ in range(200):
        pick = int(rng.integers(0, len(ys)))
        radius = float(rng.uniform(*FIELD_RADIUS_PX))
        cx, cy = (xs[pick] + 0.5) * step, (ys[pick] + 0.5) * step
        disc = (xx * step - cx) ** 2 + (yy * step - cy) ** 2 <= radius**2
        candidate = (covered | disc)[tumour].sum() / max(total, 1)
        if abs(candidate - fraction) >= abs(current - fraction):
            misses += 1
            if misses >= 8:  # no disc brings the coverage closer: done
                break
            continue
        covered |= disc
        current = candidate
        fields.append((round(cx), round(cy), round(radius)))
    return np.asarray(fields, dtype=np.int64).reshape(-1, 3)
