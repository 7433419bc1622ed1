"""Write a slide as a pyramidal, JPEG-tiled generic TIFF that OpenSlide, tiffslide and cuCIM all read.

Format choices (verified by ``tests/demo``):

- one page per level (downsample 1, 4, 16, ...), **not** SubIFDs, which OpenSlide and cuCIM would not see;
- 256x256 tiles, JPEG quality 90, RGB photometric;
- MPP as standard TIFF resolution tags (``XResolution``/``YResolution`` in pixels per centimetre with
  ``ResolutionUnit = CENTIMETER``) on every level, so the file opens as a *generic TIFF*: OpenSlide reports
  ``openslide.mpp-x`` = 0.5, tiffslide ``tiffslide.mpp-x`` = 0.5 and cuCIM ``spacing()`` = 0.5 µm. An
  Aperio-style ImageDescription was not used: with it tiffslide saw a single level and cuCIM ignores its MPP;
- no ImageDescription and no date, so the same pixels give the same bytes.

There is no objective power in a generic TIFF; readers derive magnification from the MPP (0.5 µm/px ~ 20x).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from balnmp_cache.fsio import atomic_path

__all__ = ["pyramid_downsamples", "write_pyramidal_tiff"]


def pyramid_downsamples(width: int, height: int, *, factor: int = 4, min_px: int = 64) -> list[int]:
    """Downsample of each level: 1, factor, factor**2, ... while the smaller side keeps >= ``min_px``.

    The second level is always present, so every file has at least two levels.
    """
    downsamples = [1, factor]
    while min(width, height) // (downsamples[-1] * factor) >= min_px:
        downsamples.append(downsamples[-1] * factor)
    return downsamples


def write_pyramidal_tiff(path: Path, rgb: np.ndarray, *, mpp: float, tile_px: int = 256, quality: int = 90) -> int:
    """Write ``rgb`` as a tiled pyramid; the file appears at ``path`` only when complete.

    Args:
        path: target ``.tiff`` file.
        rgb: (H, W, 3) uint8 level-0 pixels.
        mpp: microns per pixel of level 0.
        tile_px: tile width and height in pixels.
        quality: JPEG quality of the tiles.

    Returns:
        The number of levels written.
    """
    import tifffile

    height, width = rgb.shape[:2]
    downsamples = pyramid_downsamples(width, height)
    level = rgb
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=rgb.nbytes > 2**31) as tif:
        for i, downsample in enumerate(downsamples):
            if i:
                factor = downsample // downsamples[i - 1]
                level = np.asarray(Image.fromarray(level).reduce(factor))  # box filter
            px_per_cm = 1e4 / (mpp * downsample)
            tif.write(
                level,
                tile=(tile_px, tile_px),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": quality},
                resolution=(px_per_cm, px_per_cm),
                resolutionunit="CENTIMETER",
                subfiletype=0 if i == 0 else 1,
                metadata=None,
                software=False,
            )
    return len(downsamples)
