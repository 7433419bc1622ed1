"""Where patches come from: the official region grid, Otsu tissue detection, and the pixel filters.

The official preprocessing (``cut_tumor_regions.py`` then ``cut_patches.py``) is reproduced in
geometry, without writing JPEGs:

1. per polygon, bbox = (min_x, min_y) .. (max_x, max_y) of its integer vertices; the crop is
   ``img[min_y:max_y, min_x:max_x]`` (the max row and column are excluded, as upstream);
2. pixels outside the polygon are painted pure white;
3. the crop is padded right/bottom with white to a multiple of the patch size and cut into a
   non-overlapping grid whose origin is (min_x, min_y);
4. a patch is dropped when ``np.sum(patch == 255) / 3 / (h * w) >= 0.3`` (:func:`white_ratio`).

Steps 1 and 3 are pure geometry (:func:`region_candidates`); step 2 is :func:`apply_masks` on the
pixels read by the caller; step 4 needs pixels too. Patch keys are the official relative paths
``patches/<pid>/<pid>_<region>_<x_off>_<y_off>.jpg`` with offsets inside the bbox crop.

**Rasterisation.** Upstream uses ``cv2.fillPoly``, which fills the interior and the boundary pixels.
OpenCV is not a dependency; polygons are drawn with PIL ``ImageDraw.polygon(fill=..., outline=...)``,
which also includes the boundary. The two line rasterisers can differ by one pixel along slanted
edges, so a patch whose white ratio sits within a few boundary pixels of the threshold may flip.

**Early drops.** A grid cell with no polygon pixel would be 100 % white after painting and fails the
filter for any ``white_ratio_max <= 1``; it is never emitted. With ``max_outside`` set (pass the
filter's threshold), cells whose painted fraction alone reaches it are also skipped before reading:
the white ratio can only be larger.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from balnmp_cache.slides.annotations import Region
from balnmp_cache.slides.readers import SlideReader, slide_id_for_path
from balnmp_cache.slides.resolution import ResolutionPlan, plan_resolution

logger = logging.getLogger(__name__)

__all__ = [
    "PatchCandidates",
    "PatchMasks",
    "ResolutionPlan",
    "apply_masks",
    "background_ratio",
    "passes_white_filter",
    "plan_resolution",
    "region_candidates",
    "tissue_candidates",
    "tissue_mask",
    "white_ratio",
]

OFFICIAL_WHITE_RATIO_MAX = 0.3


@dataclass(frozen=True)
class PatchMasks:
    """Keep-masks of the patches that are partly outside their polygon or crop, bit-packed.

    Attributes:
        index: (N,) int32, row of ``bits`` for each candidate, -1 = keep every pixel.
        bits: (M, ceil(px * px / 8)) uint8, ``np.packbits`` of (px, px) bool masks, True = keep.
        px: side of every stored mask (the candidates' ``patch_px``).
    """

    index: np.ndarray
    bits: np.ndarray
    px: int

    def get(self, candidate: int) -> np.ndarray | None:
        """(px, px) bool keep-mask of one candidate, ``None`` when nothing is painted."""
        row = int(self.index[candidate])
        if row < 0:
            return None
        return np.unpackbits(self.bits[row], count=self.px * self.px).reshape(self.px, self.px).astype(bool)


def _no_masks(count: int, px: int) -> PatchMasks:
    return PatchMasks(np.full(count, -1, dtype=np.int32), np.zeros((0, (px * px + 7) // 8), dtype=np.uint8), px)


@dataclass(frozen=True)
class PatchCandidates:
    """Patch positions before the pixel filter.

    Attributes:
        level0_xy: (N, 2) int64 level-0 top-left x, y.
        region_id: (N,) int32 polygon index, -1 for tissue detection.
        patch_key: N stable keys (official relative paths for annotated regions).
        patch_level0_px: side of a patch in level-0 pixels (the grid stride).
        read_level: level to read from.
        read_px: side to read at that level (resize to ``patch_px`` when different).
        patch_px: side of a patch as handed on, in pixels.
        masks: what :func:`apply_masks` paints white.
    """

    level0_xy: np.ndarray
    region_id: np.ndarray
    patch_key: list[str]
    patch_level0_px: int
    read_level: int
    read_px: int
    patch_px: int
    masks: PatchMasks = field(repr=False)

    def __len__(self) -> int:
        return len(self.patch_key)


def _grid_rows(
    vertices: np.ndarray, *, crop_w: int, crop_h: int, stride: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (row offset, (stride, ncols * stride) bool band) of polygon-and-crop pixels, row by row.

    Drawing one band at a time keeps memory at ``stride x crop width`` even for 20k-pixel regions.
    """
    from PIL import Image, ImageDraw

    ncols = math.ceil(crop_w / stride)
    for y_off in range(0, crop_h, stride):
        band = Image.new("L", (ncols * stride, stride), 0)
        shifted = [(int(x), int(y) - y_off) for x, y in vertices]
        ImageDraw.Draw(band).polygon(shifted, fill=255, outline=255)
        inside = np.asarray(band) > 0
        inside[:, crop_w:] = False  # padding right of the crop is white
        inside[max(0, crop_h - y_off) :, :] = False  # padding below the crop is white
        yield y_off, inside


def _nearest(mask: np.ndarray, px: int) -> np.ndarray:
    if mask.shape == (px, px):
        return mask
    rows = (np.arange(px) * mask.shape[0]) // px
    cols = (np.arange(px) * mask.shape[1]) // px
    return mask[rows][:, cols]


def region_candidates(
    regions: Sequence[Region],
    *,
    slide_id: str,
    patch_px: int,
    patch_level0_px: int,
    read_level: int,
    read_px: int,
    max_outside: float | None = None,
) -> PatchCandidates:
    """The official crop-pad-tile grid of every region, as level-0 positions, keys and masks.

    Args:
        regions: polygons already clipped to the image (:func:`clip_regions`); vertices are rounded.
        slide_id: the patient / slide id used in the keys.
        patch_px: patch side as handed on (256 officially); masks are stored at this size.
        patch_level0_px: grid stride in level-0 pixels (= ``patch_px`` at native resolution).
        read_level: level the caller reads from (recorded only).
        read_px: side read at ``read_level`` (recorded only).
        max_outside: if set, skip cells whose painted (outside polygon or crop) fraction is already
            ``>= max_outside``; pass the white-ratio threshold. ``None`` keeps every cell that
            touches the polygon.

    Returns:
        Candidates in region order, then row-major (y, then x) within a region.
    """
    stride = int(patch_level0_px)
    cells = _CellList()
    for region in regions:
        _add_region_cells(cells, region, slide_id=slide_id, stride=stride, patch_px=patch_px, max_outside=max_outside)
    xys, region_ids, keys, mask_index, mask_bits = cells.xys, cells.region_ids, cells.keys, cells.mask_index, cells.bits
    bits = np.stack(mask_bits) if mask_bits else np.zeros((0, (patch_px * patch_px + 7) // 8), dtype=np.uint8)
    return PatchCandidates(
        level0_xy=np.asarray(xys, dtype=np.int64).reshape(-1, 2),
        region_id=np.asarray(region_ids, dtype=np.int32),
        patch_key=keys,
        patch_level0_px=stride,
        read_level=int(read_level),
        read_px=int(read_px),
        patch_px=int(patch_px),
        masks=PatchMasks(np.asarray(mask_index, dtype=np.int32), bits, int(patch_px)),
    )


@dataclass
class _CellList:
    """The kept grid cells of a slide's regions, in order, with their packed masks."""

    xys: list[tuple[int, int]] = field(default_factory=list)
    region_ids: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    mask_index: list[int] = field(default_factory=list)  # -1 = fully inside, else an index into bits
    bits: list[np.ndarray] = field(default_factory=list)


def _add_region_cells(
    cells: _CellList, region: Region, *, slide_id: str, stride: int, patch_px: int, max_outside: float | None
) -> None:
    """Append the official crop-pad-tile cells of one region to ``cells``."""
    vertices = np.rint(region.vertices).astype(np.int64)
    # the official crop's corner: that of the unclipped polygon (clamped), see Region.origin
    min_x, min_y = region.origin if region.origin is not None else vertices.min(axis=0)
    max_x, max_y = vertices.max(axis=0)
    crop_w, crop_h = int(max_x - min_x), int(max_y - min_y)
    if crop_w <= 0 or crop_h <= 0:
        logger.debug("%s region %d has an empty bbox crop; skipped", slide_id, region.region_id)
        return
    relative = vertices - np.array([min_x, min_y])
    for y_off, band in _grid_rows(relative, crop_w=crop_w, crop_h=crop_h, stride=stride):
        grid = band.reshape(stride, -1, stride)  # (stride, ncols, stride)
        counts = grid.sum(axis=(0, 2))
        for col in np.flatnonzero(counts):
            outside = 1.0 - counts[col] / (stride * stride)
            if max_outside is not None and outside >= max_outside:
                continue
            x_off = int(col) * stride
            cells.xys.append((int(min_x) + x_off, int(min_y) + y_off))
            cells.region_ids.append(region.region_id)
            cells.keys.append(f"patches/{slide_id}/{slide_id}_{region.region_id}_{x_off}_{y_off}.jpg")
            if counts[col] == stride * stride:
                cells.mask_index.append(-1)
            else:
                cells.mask_index.append(len(cells.bits))
                cells.bits.append(np.packbits(_nearest(grid[:, col, :], patch_px)))


def tissue_mask(thumbnail: np.ndarray, *, min_saturation: float = 0.05) -> np.ndarray:
    """Otsu threshold on the HSV saturation of a thumbnail; (h, w) bool, True = tissue.

    Saturation separates stained tissue from white or grey glass and from black scan borders
    (saturation 0) better than grey level. The threshold is never below ``min_saturation`` (0..1),
    so a blank slide does not split its noise into "tissue".
    """
    from skimage.filters import threshold_otsu

    # channel-wise max/min on uint8 (3 cheap passes), float only for the 2-D ratio
    r, g, b = thumbnail[..., 0], thumbnail[..., 1], thumbnail[..., 2]
    high = np.maximum(np.maximum(r, g), b).astype(np.float32)
    low = np.minimum(np.minimum(r, g), b).astype(np.float32)
    saturation = (high - low) / np.maximum(high, 1.0)  # 0 where high == 0
    threshold = float(threshold_otsu(saturation)) if np.ptp(saturation) > 0 else 1.0
    return saturation > max(threshold, min_saturation)


def tissue_candidates(
    reader: SlideReader,
    *,
    patch_px: int,
    patch_level0_px: int,
    read_level: int,
    read_px: int,
    min_tissue: float = 0.5,
    thumbnail_px: int = 2048,
    slide_id: str | None = None,
) -> PatchCandidates:
    """A level-0 grid (origin 0, 0) over the whole slide, kept where the tissue fraction is enough.

    Args:
        reader: the open slide.
        patch_px, patch_level0_px, read_level, read_px: as in :class:`PatchCandidates`.
        min_tissue: minimum fraction of the patch area (0..1) that the thumbnail calls tissue.
        thumbnail_px: longest side of the thumbnail the mask is computed on.
        slide_id: used in keys ``<slide_id>_<x>_<y>``; defaults to the slide file's id.
    """
    slide_id = slide_id if slide_id is not None else slide_id_for_path(reader.path)
    width, height = reader.dimensions
    mask = tissue_mask(reader.thumbnail(thumbnail_px))
    scale_x, scale_y = mask.shape[1] / width, mask.shape[0] / height
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = mask.cumsum(axis=0).cumsum(axis=1)
    stride = int(patch_level0_px)
    xs = np.arange(0, width, stride)
    ys = np.arange(0, height, stride)
    grid_x, grid_y = np.meshgrid(xs, ys)  # (rows, cols) each
    gx, gy = grid_x.ravel(), grid_y.ravel()  # (rows * cols,), row-major order
    x0 = np.clip(np.floor(gx * scale_x).astype(np.int64), 0, mask.shape[1] - 1)
    y0 = np.clip(np.floor(gy * scale_y).astype(np.int64), 0, mask.shape[0] - 1)
    x1 = np.clip(np.ceil((gx + stride) * scale_x).astype(np.int64), x0 + 1, mask.shape[1])
    y1 = np.clip(np.ceil((gy + stride) * scale_y).astype(np.int64), y0 + 1, mask.shape[0])
    tissue = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    # Thumbnail cells of a patch running past the slide border are missing: divide by the full area.
    full_area = np.ceil(stride * scale_x) * np.ceil(stride * scale_y)
    area = np.maximum((x1 - x0) * (y1 - y0), full_area)
    keep = tissue / area >= min_tissue
    xys = np.stack([gx[keep], gy[keep]], axis=1).astype(np.int64)
    keys = [f"{slide_id}_{x}_{y}" for x, y in xys.tolist()]
    logger.debug("%s: %d of %d grid cells are tissue", slide_id, len(keys), len(gx))
    return PatchCandidates(
        level0_xy=xys.reshape(-1, 2),
        region_id=np.full(len(keys), -1, dtype=np.int32),
        patch_key=keys,
        patch_level0_px=stride,
        read_level=int(read_level),
        read_px=int(read_px),
        patch_px=int(patch_px),
        masks=_no_masks(len(keys), int(patch_px)),
    )


def apply_masks(patches: np.ndarray, candidates: PatchCandidates, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Paint outside-polygon and outside-crop pixels white, in place.

    Args:
        patches: (B, h, w, 3) uint8, read at ``candidates.level0_xy[indices]``; any h = w works
            (masks are resized nearest-neighbour when h differs from ``patch_px``).
        candidates: where the patches came from.
        indices: (B,) candidate index of each patch.

    Returns:
        ``patches`` itself.
    """
    for row, candidate in enumerate(np.asarray(indices).tolist()):
        keep = candidates.masks.get(candidate)
        if keep is None:
            continue
        keep = _nearest(keep, patches.shape[1]) if keep.shape[0] != patches.shape[1] else keep
        patches[row][~keep] = 255
    return patches


def white_ratio(patches: np.ndarray) -> np.ndarray:
    """The official blank ratio, ``np.sum(patch == 255) / 3 / (h * w)`` per patch.

    Counts channel values exactly equal to 255, averaged over the 3 channels (not "pixels whose
    three channels are white"); near-white 254 does not count.

    Args:
        patches: (B, h, w, 3) uint8.

    Returns:
        (B,) float64 in [0, 1]; the official rule drops a patch when it is ``>= 0.3``.
    """
    _, h, w, _ = patches.shape
    return np.count_nonzero(patches == 255, axis=(1, 2, 3)) / 3.0 / (h * w)


def passes_white_filter(patches: np.ndarray, *, white_ratio_max: float = OFFICIAL_WHITE_RATIO_MAX) -> np.ndarray:
    """(B,) bool: True where the official rule keeps the patch (``white_ratio < white_ratio_max``)."""
    return white_ratio(patches) < white_ratio_max


def background_ratio(patches: np.ndarray, *, max_saturation: float = 0.08, min_white: int = 235) -> np.ndarray:
    """Fraction of background pixels per patch: a real detector, offered instead of :func:`white_ratio`.

    A pixel is background when its HSV saturation ``(max - min) / max`` is below ``max_saturation``
    (white or grey glass, e.g. the raw-slide background (178, 176, 179) the official rule misses, and
    black borders) or when all three channels are ``>= min_white`` (bright, faintly tinted glass).

    Args:
        patches: (B, h, w, 3) uint8.

    Returns:
        (B,) float64 in [0, 1].
    """
    rgb = patches.astype(np.int16)
    high = rgb.max(axis=-1)
    low = rgb.min(axis=-1)
    saturation = (high - low) / np.maximum(high, 1)
    background = (saturation < max_saturation) | (low >= min_white)
    _, h, w, _ = patches.shape
    return background.reshape(len(patches), -1).sum(axis=1) / float(h * w)
