"""Morphometry of labelled nuclei, vectorised over every nucleus of a patch (no per-region Python object).

Input: a label image, (H, W) integer, 0 = background, nuclei 1..n (consecutive), and the patch's
haematoxylin optical density (H, W). Output: one value per nucleus, in **pixels of the patch** (the
caller converts to µm with the patch's MPP). Definitions, also in ``docs/nuclei.md``:

- ``area_px2``: pixel count.
- ``major_axis_px`` / ``minor_axis_px``: 4 * sqrt(eigenvalues) of the covariance of the nucleus's pixel
  *squares* (pixel centres plus the 1/12 px² of a unit square), the full axes of the ellipse with the same
  second moments (scikit-image's ``axis_major_length`` without the square's term).
- ``orientation_deg``: angle of the major axis from the image x axis (columns, to the right), counted
  counter-clockwise as the image is seen on screen (y grows downwards), in [0, 180). An axis, not a
  direction: 0 and 180 are the same.
- ``eccentricity``: sqrt(1 - minor² / major²) of that ellipse.
- ``perimeter_px``: Crofton perimeter with four directions, from the 2x2 pixel configurations
  (scikit-image's ``perimeter_crofton``, per label); the outline's own length, concavities included.
- ``circumference_px``: perimeter of the convex hull of the pixel centres grown by half a pixel (a disc
  of radius 0.5: + pi), the length of a string wrapped around the nucleus.
- ``circularity``: 4 pi area / perimeter² (1 for a disc, lower for elongated or ragged outlines).
- ``rectangularity``: area / area of the smallest rotated rectangle around the pixel squares
  (rotating calipers over the hull's edges; 1 for a rectangle, pi/4 for an ellipse).
- ``solidity``: area / pixels whose centre lies in the convex hull of the pixel centres (1 when convex).
- ``mean_hematoxylin_od``: mean haematoxylin optical density over the nucleus.
- ``border``: the nucleus touches the patch's edge (its shape is cut; see :mod:`balnmp_cache.nuclei.bags`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["FEATURE_COLUMNS", "measure_nuclei"]

FEATURE_COLUMNS: tuple[str, ...] = (
    "area_px2", "major_axis_px", "minor_axis_px", "orientation_deg", "eccentricity", "perimeter_px",
    "circumference_px", "circularity", "rectangularity", "solidity", "mean_hematoxylin_od",
)  # fmt: skip
"""The per-nucleus measurements of :func:`measure_nuclei` besides the centroid and ``border``."""

# scikit-image's perimeter_crofton (4 directions), indexed by the 2x2 code 1*d + 2*b + 4*c + 8*a
# of a window [[a, b], [c, d]] (a = top-left).
_CROFTON = np.array([
    0, math.pi / 4 * (1 + 1 / math.sqrt(2)), math.pi / (4 * math.sqrt(2)), math.pi / (2 * math.sqrt(2)),
    0, math.pi / 4 * (1 + 1 / math.sqrt(2)), 0, math.pi / (4 * math.sqrt(2)),
    math.pi / 4, math.pi / 2, math.pi / (4 * math.sqrt(2)), math.pi / (4 * math.sqrt(2)),
    math.pi / 4, math.pi / 2, 0, 0,
])  # fmt: skip


def _crofton_perimeter(labels: np.ndarray, n: int) -> np.ndarray:
    """(n,) Crofton perimeter of every label, each window counted once per label it holds."""
    padded = np.pad(labels, 1)
    a, b = padded[:-1, :-1].ravel(), padded[:-1, 1:].ravel()
    c, d = padded[1:, :-1].ravel(), padded[1:, 1:].ravel()
    total = np.zeros(n + 1)
    # a window holds up to four labels: each is counted from the first corner (d, c, b, a) that has it
    for corner, earlier in ((d, ()), (c, (d,)), (b, (d, c)), (a, (d, c, b))):
        first = corner != 0
        for other in earlier:
            first &= corner != other
        lab = corner[first]
        code = (
            (d[first] == lab) * 1 + (b[first] == lab) * 2 + (c[first] == lab) * 4 + (a[first] == lab) * 8
        )
        total += np.bincount(lab, weights=_CROFTON[code], minlength=n + 1)
    return total[1:]


def _moments(labels: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Area, centroid and pixel-square covariance of every label (rows = y, columns = x)."""
    flat = labels.ravel()
    on = np.flatnonzero(flat)
    lab = flat[on]
    y, x = np.divmod(on, labels.shape[1])
    area = np.bincount(lab, minlength=n + 1)[1:].astype(np.float64)
    sums = [np.bincount(lab, weights=v, minlength=n + 1)[1:] for v in (x, y, x * x, y * y, x * y)]
    cx, cy = sums[0] / area, sums[1] / area
    var_x = sums[2] / area - cx * cx + 1 / 12
    var_y = sums[3] / area - cy * cy + 1 / 12
    cov_xy = sums[4] / area - cx * cy
    return {"area": area, "cx": cx, "cy": cy, "var_x": var_x, "var_y": var_y, "cov_xy": cov_xy}


def _ellipse(m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Axes, orientation and eccentricity of the ellipse with the same second moments."""
    half_sum = (m["var_x"] + m["var_y"]) / 2
    root = np.sqrt(((m["var_x"] - m["var_y"]) / 2) ** 2 + m["cov_xy"] ** 2)
    major_var, minor_var = half_sum + root, np.maximum(half_sum - root, 0.0)
    # angle from +x towards +y (clockwise on screen); negated for counter-clockwise, folded into [0, 180)
    clockwise = 0.5 * np.arctan2(2 * m["cov_xy"], m["var_x"] - m["var_y"])
    orientation = np.mod(-np.degrees(clockwise), 180.0)
    eccentricity = np.sqrt(np.clip(1 - minor_var / np.maximum(major_var, 1e-12), 0.0, 1.0))
    return {
        "major_axis_px": 4 * np.sqrt(major_var), "minor_axis_px": 4 * np.sqrt(minor_var),
        "orientation_deg": orientation, "eccentricity": eccentricity,
    }  # fmt: skip


def _row_extremes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (label, row) the first and last column, grouped by label and sorted by row.

    Returns:
        lab, row, first_col, last_col: (R,) arrays, one entry per row of every nucleus.
    """
    height, width = labels.shape
    flat = labels.ravel()
    on = np.flatnonzero(flat)  # raster order: columns ascend within a row
    lab = flat[on].astype(np.int64)
    key = lab * height + on // width
    order = np.argsort(key, kind="stable")
    key, cols = key[order], (on % width)[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)] - 1
    return key[starts] // height, key[starts] % height, cols[starts], cols[ends]


def _convex_chains(group: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Vertices of the greatest convex minorant of x(y) within each group: a bool mask over the points.

    The points are sorted by (group, y). A point on or beyond the segment between its two remaining
    neighbours of the same group can never be a vertex, so every such point is dropped at once, pass
    after pass, until none is left (a few passes for blob-like shapes).
    """
    alive = np.arange(len(ys))
    while True:
        g, y, x = group[alive], ys[alive], xs[alive]
        interior = np.zeros(len(alive), dtype=bool)
        interior[1:-1] = (g[:-2] == g[1:-1]) & (g[2:] == g[1:-1])
        cross = np.zeros(len(alive))
        cross[1:-1] = (y[1:-1] - y[:-2]) * (x[2:] - x[:-2]) - (x[1:-1] - x[:-2]) * (y[2:] - y[:-2])
        drop = interior & (cross <= 0)
        if not drop.any():
            break
        alive = alive[~drop]
    keep = np.zeros(len(ys), dtype=bool)
    keep[alive] = True
    return keep


def _interp_chain(group: np.ndarray, ys: np.ndarray, cg: np.ndarray, cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
    """x of each group's chain (vertices cg, cy, cx sorted by group and y) at the rows ``ys`` of that group."""
    span = float(max(ys.max(initial=0), cy.max(initial=0)) + 2)
    keys, vertex_keys = group * span + ys, cg * span + cy
    upper = np.clip(np.searchsorted(vertex_keys, keys, side="left"), 1, len(cy) - 1)
    lower = upper - 1
    same = cg[upper] == group  # a one-vertex chain (a single row) has no segment
    dy = np.where(same & (cy[upper] != cy[lower]), cy[upper] - cy[lower], 1.0)
    t = np.where(same, (ys - cy[lower]) / dy, 0.0)
    at = np.where(cg[lower] == group, lower, upper)
    return np.where(same & (cg[lower] == group), cx[lower] + t * (cx[upper] - cx[lower]), cx[at])


def _polygon_of(
    lab: np.ndarray, ys: np.ndarray, left: np.ndarray, right: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Hull polygons of every nucleus: (group, x, y) of the vertices, each polygon contiguous.

    Left side top to bottom, then right side bottom to top; repeated consecutive vertices dropped.
    """
    on_left = _convex_chains(lab, ys, left)
    on_right = _convex_chains(lab, ys, -right)
    lg, ly, lx = lab[on_left], ys[on_left], left[on_left]
    rg, ry, rx = lab[on_right], ys[on_right], right[on_right]
    order_r = np.lexsort((-ry, rg))  # the right side bottom to top
    group = np.concatenate([lg, rg[order_r]])
    px = np.concatenate([lx, rx[order_r]]).astype(np.float64)
    py = np.concatenate([ly, ry[order_r]]).astype(np.float64)
    order = np.argsort(group, kind="stable")
    group, px, py = group[order], px[order], py[order]
    same_as_prev = np.r_[False, (group[1:] == group[:-1]) & (px[1:] == px[:-1]) & (py[1:] == py[:-1])]
    return group[~same_as_prev], px[~same_as_prev], py[~same_as_prev], (lg, ly, lx, rg, ry, rx)


def _hulls(labels: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Circumference, smallest rotated rectangle and hull pixel count of every label, vectorised."""
    lab, ys, left, right = _row_extremes(labels)
    group, px, py, chains = _polygon_of(lab, ys, left, right)
    lg, ly, lx, rg, ry, rx = chains
    x_left = _interp_chain(lab, ys, lg, ly, lx)
    x_right = _interp_chain(lab, ys, rg, ry, rx)
    counts = np.floor(x_right + 1e-9) - np.ceil(x_left - 1e-9) + 1
    hull_pixels = np.bincount(lab, weights=counts, minlength=n + 1)[1:]
    # edges: each vertex to the next of its polygon, the last back to the first
    starts = np.searchsorted(group, np.arange(1, n + 2))
    nxt = np.arange(len(group)) + 1
    nxt[starts[1:] - 1] = starts[:-1]
    ex, ey = px[nxt] - px, py[nxt] - py
    lengths = np.hypot(ex, ey)
    circumference = np.bincount(group, weights=lengths, minlength=n + 1)[1:] + math.pi
    rect = _min_rectangles(group, px, py, ex, ey, lengths, starts)
    return {"circumference_px": circumference, "rect_area_px2": rect, "hull_pixels": hull_pixels}


def _min_rectangles(
    group: np.ndarray, px: np.ndarray, py: np.ndarray, ex: np.ndarray, ey: np.ndarray, lengths: np.ndarray,
    starts: np.ndarray,
) -> np.ndarray:
    """(n,) smallest (extent + 1) x (extent + 1) over the hull's edge directions (rotating calipers).

    Every edge of a nucleus is paired with every vertex of the same nucleus: sum over nuclei of E x V pairs.
    """
    sizes = np.diff(starts)  # (n,) vertices (= edges) per polygon
    n = len(sizes)
    safe = np.where(lengths > 0, lengths, 1.0)
    ux, uy = np.where(lengths > 0, ex / safe, 1.0), np.where(lengths > 0, ey / safe, 0.0)
    edge = np.repeat(np.arange(len(group)), sizes[group - 1])  # each edge once per vertex of its polygon
    first = np.repeat(starts[:-1][group - 1], sizes[group - 1])
    block = np.arange(len(edge)) - np.repeat(np.cumsum(sizes[group - 1]) - sizes[group - 1], sizes[group - 1])
    vertex = first + block
    along = ux[edge] * px[vertex] + uy[edge] * py[vertex]
    across = ux[edge] * py[vertex] - uy[edge] * px[vertex]
    bounds = np.r_[0, np.cumsum(sizes[group - 1])[:-1]]
    extent = (np.maximum.reduceat(along, bounds) - np.minimum.reduceat(along, bounds) + 1) * (
        np.maximum.reduceat(across, bounds) - np.minimum.reduceat(across, bounds) + 1
    )  # (E,)
    return np.minimum.reduceat(extent, starts[:-1]) if n else np.zeros(0)


def measure_nuclei(labels: np.ndarray, hematoxylin_od: np.ndarray) -> dict[str, np.ndarray]:
    """Every measurement of every nucleus of one patch, in pixels.

    Args:
        labels: (H, W) int label image, 0 = background, nuclei numbered 1..n without gaps.
        hematoxylin_od: (H, W) haematoxylin optical density of the same patch.

    Returns:
        ``centroid_x_px``, ``centroid_y_px`` (pixel centres at integers), :data:`FEATURE_COLUMNS` and
        ``border`` (bool), each (n,).
    """
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    n = int(labels.max(initial=0))
    if n == 0:
        empty = {name: np.zeros(0) for name in ("centroid_x_px", "centroid_y_px", *FEATURE_COLUMNS)}
        return {**empty, "border": np.zeros(0, dtype=bool)}
    m = _moments(labels, n)
    hull = _hulls(labels, n)
    perimeter = _crofton_perimeter(labels, n)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border = np.zeros(n + 1, dtype=bool)
    border[edge] = True
    h_sum = np.bincount(labels.ravel(), weights=hematoxylin_od.ravel(), minlength=n + 1)[1:]
    area = m["area"]
    return {
        "centroid_x_px": m["cx"], "centroid_y_px": m["cy"], "area_px2": area, **_ellipse(m),
        "perimeter_px": perimeter, "circumference_px": hull["circumference_px"],
        "circularity": 4 * math.pi * area / np.maximum(perimeter, 1e-9) ** 2,
        "rectangularity": area / hull["rect_area_px2"], "solidity": area / np.maximum(hull["hull_pixels"], area),
        "mean_hematoxylin_od": h_sum / area, "border": border[1:],
    }  # fmt: skip
