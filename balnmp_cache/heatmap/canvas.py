"""One transform between level-0 pixels and the pixels of a rendered map, and the patch grid drawn with it.

A map never allocates anything the size of the slide: a :class:`Canvas` of at most ``canvas_px`` pixels per
side covers a level-0 extent, and :func:`patch_index` says which patch (or none) lies under the centre of
each canvas pixel. Overlay, thumbnail and alignment test all use this one transform, so cells land on their
patches at every downsample, including patches that run past the last row or column of the slide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Canvas", "canvas_for", "cell_px", "extent_of", "layout_coords", "patch_index"]


@dataclass(frozen=True)
class Canvas:
    """A rendered image over a level-0 extent.

    Attributes:
        width_px, height_px: the image size in pixels.
        origin_level0: level-0 (x, y) of the image's top-left corner.
        level0_per_px: level-0 pixels per image pixel along x and along y (they differ by a hair: each is the
            extent divided by the whole number of pixels that covers it).
    """

    width_px: int
    height_px: int
    origin_level0: tuple[float, float]
    level0_per_px: tuple[float, float]

    def centres_level0(self) -> tuple[np.ndarray, np.ndarray]:
        """Level-0 x of every column's centre (W,) and y of every row's centre (H,)."""
        x0, y0 = self.origin_level0
        sx, sy = self.level0_per_px
        return x0 + (np.arange(self.width_px) + 0.5) * sx, y0 + (np.arange(self.height_px) + 0.5) * sy

    def to_px(self, level0_xy: np.ndarray) -> np.ndarray:
        """(N, 2) level-0 points -> (N, 2) float image coordinates (pixel edges at integers)."""
        origin = np.asarray(self.origin_level0, dtype=np.float64)
        return (np.asarray(level0_xy, dtype=np.float64) - origin) / np.asarray(self.level0_per_px)


def canvas_for(origin_level0: tuple[float, float], size_level0: tuple[float, float], max_px: int) -> Canvas:
    """The canvas of at most ``max_px`` pixels per side over an extent (never finer than level 0).

    The geometry of the slide readers' thumbnails: whole pixels rounded down from ``size * max_px / longest
    side``, each axis then spanning the whole extent (``level0_per_px = size / pixels``, as an image resize maps
    it), so a thumbnail of the whole slide lies on the canvas pixel for pixel.

    Args:
        origin_level0: level-0 (x, y) of the extent's top-left corner.
        size_level0: level-0 (width, height) of the extent.
        max_px: the longest side of the image.
    """
    width, height = float(size_level0[0]), float(size_level0[1])
    shrink = min(1.0, max_px / max(width, height))
    width_px, height_px = max(1, math.floor(width * shrink)), max(1, math.floor(height * shrink))
    return Canvas(width_px, height_px, (float(origin_level0[0]), float(origin_level0[1])),
                  (width / width_px, height / height_px))


def layout_coords(coords: np.ndarray, region_id: np.ndarray, patch_level0_px: int, frame: str) -> np.ndarray:
    """Where each patch is drawn: its level-0 coords, or, for coords that are offsets inside each region's
    crop (``coords_frame = region_offset``: pre-cut patches without their polygons), the regions side by side.
    """
    coords = np.asarray(coords, dtype=np.int64)
    if frame != "region_offset":
        return coords
    out = coords.copy()
    shift = 0
    for region in np.unique(region_id):
        members = region_id == region
        out[members, 0] += shift - coords[members, 0].min()
        shift += int(coords[members, 0].max() - coords[members, 0].min()) + 2 * patch_level0_px
    return out


def _lattices(level0_xy: np.ndarray, patch_level0_px: int) -> list[np.ndarray]:
    """Patch indices grouped by grid origin (x mod P, y mod P), largest group first.

    A tissue grid is one lattice; a BCNB slide has one per annotated region (each region's grid starts at its
    own corner).
    """
    phase = np.mod(level0_xy, patch_level0_px)
    _, group = np.unique(phase, axis=0, return_inverse=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    members = np.split(order, bounds)
    return sorted(members, key=lambda m: (-len(m), int(m[0])))


def patch_index(canvas: Canvas, level0_xy: np.ndarray, patch_level0_px: int) -> np.ndarray:
    """(H, W) int32: the index of the patch under each canvas pixel's centre, -1 where there is none.

    A pixel belongs to a patch when its centre lies in the patch's level-0 square [x, x + P) x [y, y + P).
    Where patches overlap (annotated regions whose crops overlap), the region drawn first (the larger) wins.
    Cost: one small grid per lattice plus O(canvas pixels), whatever the slide's size.

    Args:
        canvas: the image.
        level0_xy: (N, 2) top-left level-0 x, y of every patch.
        patch_level0_px: P, the side of a patch in level-0 pixels.
    """
    out = np.full((canvas.height_px, canvas.width_px), -1, dtype=np.int32)
    if len(level0_xy) == 0:
        return out
    xy = np.asarray(level0_xy, dtype=np.int64)
    size = int(patch_level0_px)
    centres_x, centres_y = canvas.centres_level0()
    for members in _lattices(xy, size):
        origin = xy[members[0]] % size
        cells = (xy[members] - origin) // size  # (n, 2) column, row of each patch in its lattice
        low = cells.min(axis=0)
        grid = np.full(tuple((cells.max(axis=0) - low + 1)[::-1]), -1, dtype=np.int32)  # (rows, cols)
        grid[cells[:, 1] - low[1], cells[:, 0] - low[0]] = members
        col = np.floor((centres_x - origin[0]) / size).astype(np.int64) - low[0]  # (W,)
        row = np.floor((centres_y - origin[1]) / size).astype(np.int64) - low[1]  # (H,)
        cols = np.flatnonzero((col >= 0) & (col < grid.shape[1]))
        rows = np.flatnonzero((row >= 0) & (row < grid.shape[0]))
        if not len(cols) or not len(rows):
            continue
        window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # rows and cols are contiguous
        painted = grid[np.ix_(row[rows], col[cols])]
        target = out[window]
        free = target < 0
        target[free] = painted[free]
    return out


def cell_px(canvas: Canvas, patch_level0_px: int) -> float:
    """The side of one patch on the canvas in pixels (the smaller of the two axes)."""
    return patch_level0_px / max(canvas.level0_per_px)


def extent_of(level0_xy: np.ndarray, patch_level0_px: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Level-0 origin and size of the box around every patch."""
    low = np.asarray(level0_xy, dtype=np.int64).min(axis=0)
    high = np.asarray(level0_xy, dtype=np.int64).max(axis=0) + int(patch_level0_px)
    return (int(low[0]), int(low[1])), (int(high[0] - low[0]), int(high[1] - low[1]))
