"""The default segmenter: colour deconvolution, threshold, distance-transform watershed (scikit-image, offline).

Per patch (every step's size in µm, converted with the patch's µm per pixel):

1. colour deconvolution with the fixed Ruifrok-Johnston stain matrix (``skimage.color.rgb2hed``'s, as
   per-channel lookup tables: :func:`stain_od`): haematoxylin, and the third ("DAB") channel, which in H&E
   holds what neither stain explains (black pigment, ink, dark debris);
2. Gaussian smoothing of both (``smooth_sigma_um``);
3. foreground: Otsu's threshold of the smoothed haematoxylin over the whole patch times ``otsu_scale``,
   never below ``threshold_od`` (or ``threshold_od`` alone with ``threshold = "fixed"``), where the smoothed
   third channel stays below ``dab_max_od``;
4. holes filled (``fill_holes``: background components that do not touch the patch edge), objects below
   ``min_area_um2`` removed;
5. seeds: the h-maxima of the Gaussian-smoothed (``seed_sigma_um``) Euclidean distance transform, regional
   maxima at least ``seed_h_um`` higher than the saddle to any higher one, so two touching nuclei are split
   where the foreground narrows by that much and an elongated nucleus keeps one seed (an object lower than
   that everywhere gets one seed at its highest pixel);
6. watershed of the negated distance map from the seeds inside the foreground (splits touching nuclei);
7. nuclei outside [``min_area_um2``, ``max_area_um2``] dropped, the rest numbered 1..n.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np

__all__ = ["ClassicalParams", "ClassicalSegmenter", "hematoxylin_od", "segment_patch", "stain_od"]

_LOG_ADJUST = math.log(1e-6)


@lru_cache(maxsize=1)
def _stain_luts() -> np.ndarray:
    """(3, 3, 256) float32: stain (H, E, DAB) x channel (R, G, B) x 8-bit value -> contribution (``rgb2hed``)."""
    from skimage.color import hed_from_rgb

    values = np.maximum(np.arange(256, dtype=np.float64) / 255.0, 1e-6)
    logs = np.log(values) / _LOG_ADJUST  # (256,)
    return (hed_from_rgb.T[:, :, None] * logs[None, None, :]).astype(np.float32)


def stain_od(rgb: np.ndarray, stain: int) -> np.ndarray:
    """One channel of ``skimage.color.rgb2hed`` (0 haematoxylin, 1 eosin, 2 DAB), clipped at 0, from uint8 RGB.

    Args:
        rgb: (..., 3) uint8.
        stain: the channel.

    Returns:
        (...) float32, equal to ``np.maximum(rgb2hed(rgb)[..., stain], 0)`` to float32 precision.
    """
    lut = _stain_luts()[stain]
    out = lut[0][rgb[..., 0]]
    out += lut[1][rgb[..., 1]]
    out += lut[2][rgb[..., 2]]
    np.maximum(out, 0, out=out)
    return out


def hematoxylin_od(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) float32 haematoxylin optical density (:func:`stain_od` channel 0)."""
    return stain_od(rgb, 0)


@dataclass(frozen=True)
class ClassicalParams:
    """The settings of :class:`ClassicalSegmenter` (the fields of the same names in the stage config)."""

    smooth_sigma_um: float = 0.0
    threshold: Literal["otsu", "fixed"] = "otsu"
    otsu_scale: float = 1.2
    threshold_od: float = 0.02
    dab_max_od: float = 0.05
    seed_sigma_um: float = 0.825
    seed_h_um: float = 0.165
    min_area_um2: float = 9.0
    max_area_um2: float = 400.0
    fill_holes: bool = True

    @classmethod
    def from_config(cls, config: Any) -> ClassicalParams:
        """The fields of ``config`` (a :class:`~balnmp_cache.nuclei.config.NucleiConfig`) that are settings here."""
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of ``values`` (their value when they are all equal)."""
    from skimage.filters import threshold_otsu

    if values.min() == values.max():
        return float(values.max())
    return float(threshold_otsu(values))


def _smoothed(channel: np.ndarray, sigma_px: float) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(channel, sigma_px) if sigma_px > 0 else channel


def _foreground(rgb: np.ndarray, params: ClassicalParams, *, px_um: float) -> np.ndarray:
    """Steps 1-4: the thresholded, hole-filled foreground without objects below ``min_area_um2``."""
    from scipy import ndimage as ndi

    sigma_px = params.smooth_sigma_um / px_um
    hema = _smoothed(hematoxylin_od(rgb), sigma_px)
    level = params.threshold_od
    if params.threshold == "otsu":
        level = max(level, params.otsu_scale * _otsu(hema))
    mask = (hema > level) & (_smoothed(stain_od(rgb, 2), sigma_px) < params.dab_max_od)
    if params.fill_holes:
        mask = _filled(mask)
    objects, n = ndi.label(mask)
    if n:
        small = np.bincount(objects.ravel(), minlength=n + 1) < params.min_area_um2 / px_um**2
        small[0] = False
        mask[small[objects]] = False
    return mask


def _filled(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: background components (4-connected) not touching the edge."""
    from scipy import ndimage as ndi

    holes, n = ndi.label(~mask)
    if n == 0:
        return mask
    edge = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    is_hole = np.ones(n + 1, dtype=bool)
    is_hole[edge] = False
    is_hole[0] = False
    return mask | is_hole[holes]


def _dilated3(image: np.ndarray) -> np.ndarray:
    """3x3 greyscale dilation (``ndi.grey_dilation(image, size=(3, 3))``) by maxima of shifted views."""
    rows = image.copy()
    np.maximum(rows[1:], image[:-1], out=rows[1:])
    np.maximum(rows[:-1], image[1:], out=rows[:-1])
    out = rows.copy()
    np.maximum(out[:, 1:], rows[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], rows[:, 1:], out=out[:, :-1])
    return out


def h_maxima(image: np.ndarray, h: float) -> np.ndarray:
    """Bool mask of the h-maxima of a distance map (>= 0, background 0), 8-connected, where ``image > 0``.

    ``skimage.morphology.h_maxima``'s definition (greyscale reconstruction by dilation of ``image - h``
    under ``image``), computed by repeated 3x3 dilations until nothing changes. The background starts at
    its cap 0, so the passes run only across objects (about their radius), not across the whole patch;
    inside objects whose distance peak is at least ``h`` the result equals scikit-image's.
    """
    image = np.asarray(image, dtype=np.float64)
    resolution = 2 * np.finfo(np.float64).resolution * np.abs(image)
    current = np.where(image > 0, image - h - resolution, image)
    while True:
        grown = np.minimum(_dilated3(current), image)
        if np.array_equal(grown, current):
            break
        current = grown
    return ((image - current) >= h) & (image > 0)


def _seeds(distance: np.ndarray, mask: np.ndarray, h_px: float) -> np.ndarray:
    """Watershed markers: the h-maxima of ``distance``, plus the highest pixel of any object that has none
    (an object lower than ``h_px`` everywhere is one nucleus, not none)."""
    from scipy import ndimage as ndi

    markers, n = ndi.label(h_maxima(distance, h_px) & mask, structure=np.ones((3, 3)))
    objects, n_objects = ndi.label(mask)
    seeded = np.zeros(n_objects + 1, dtype=bool)
    seeded[objects[markers > 0]] = True
    missing = np.flatnonzero(~seeded[1:]) + 1
    for k, (y, x) in enumerate(ndi.maximum_position(distance, objects, missing) if len(missing) else []):
        markers[y, x] = n + 1 + k
    return markers


def segment_patch(rgb: np.ndarray, params: ClassicalParams, *, px_um: float) -> np.ndarray:
    """Label the nuclei of one patch (or any RGB image).

    Args:
        rgb: (H, W, 3) uint8.
        params: the segmenter's settings.
        px_um: µm per pixel of the image.

    Returns:
        (H, W) int32, 0 = background, nuclei 1..n.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    mask = _foreground(rgb, params, px_um=px_um)
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    distance = _smoothed(ndi.distance_transform_edt(mask), params.seed_sigma_um / px_um) * mask  # 0 outside
    markers = _seeds(distance, mask, params.seed_h_um / px_um)
    labels = watershed(-distance, markers, mask=mask)
    um2 = px_um * px_um
    return _size_filtered(labels, params.min_area_um2 / um2, params.max_area_um2 / um2)


def _size_filtered(labels: np.ndarray, min_px: float, max_px: float) -> np.ndarray:
    """Labels with an area in [min_px, max_px], renumbered 1..n in label order."""
    area = np.bincount(labels.ravel())
    keep = (area >= min_px) & (area <= max_px)
    keep[0] = False
    lut = np.zeros(len(area), dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]


@dataclass(frozen=True)
class ClassicalSegmenter:
    """:func:`segment_patch` over a batch; see the module docstring for the steps."""

    params: ClassicalParams
    name: str = "classical"
    identifier: str = "classical-v1"

    def settings(self) -> dict[str, Any]:
        """Everything besides the identifier that changes the labels (part of the tables' key)."""
        return asdict(self.params)

    def segment(self, patches: np.ndarray, *, px_um: float) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, H, W) int32 labels, each patch numbered from 1."""
        return np.stack([segment_patch(patch, self.params, px_um=px_um) for patch in patches])
