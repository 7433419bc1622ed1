"""The four pixel backends behind :class:`~balnmp_cache.slides.readers.SlideReader`.

Every backend reads only the part of a region that lies inside the level (the shared
:meth:`_BaseReader.read_region` clips), and pads the rest with white (255), like the official
``cut_patches`` right/bottom white padding. cuCIM would pad with black and OpenSlide with
transparent pixels, so the clipping is done here, once, for all of them.

Backend modules are imported inside the constructors: importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.slides.metadata import dicom_needs_ycbcr_fix, properties_mpp_magnification, slide_mpp_magnification

logger = logging.getLogger(__name__)

__all__ = ["CucimReader", "OpenSlideReader", "PilReader", "TiffSlideReader"]

_THUMB_BLOCK = 4096  # level pixels per block when building a thumbnail


def as_rgb(array: np.ndarray) -> np.ndarray:
    """(h, w), (h, w, 1), (h, w, 3) or (h, w, 4) uint8 -> (h, w, 3) uint8; alpha composited on white."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {array.dtype}")
    if array.ndim == 2:
        array = array[..., None]
    channels = array.shape[-1]
    if channels == 1:
        return np.repeat(array, 3, axis=-1)
    if channels == 4:
        alpha = array[..., 3:4]
        rgb = array[..., :3]
        if alpha.min() == 255:
            return np.ascontiguousarray(rgb)
        weight = alpha.astype(np.float32) / 255.0
        return np.clip(rgb * weight + 255.0 * (1.0 - weight) + 0.5, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array[..., :3])


class _BaseReader(ABC):
    """Shared clipping, padding, batching, thumbnail and context-manager logic.

    Subclasses set the level geometry and implement :meth:`_read`, which is only ever called with
    a region that lies inside the level.
    """

    backend = "base"
    _thread_safe = False  # whether read_regions may call read_region from several threads

    def __init__(self, path: Path, *, num_workers: int = 2) -> None:
        self.path = Path(path)
        self.num_workers = max(1, int(num_workers))
        self.level_dimensions: tuple[tuple[int, int], ...] = ()
        self.level_downsamples: tuple[float, ...] = ()
        self.mpp: float | None = None
        self.magnification: float | None = None

    # -- geometry ---------------------------------------------------------------------------
    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) in pixels."""
        return self.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    def _check_level(self, level: int) -> None:
        if not 0 <= level < self.level_count:
            raise ValueError(f"level {level} out of range for {self.path.name} (levels 0..{self.level_count - 1})")

    def _window(self, level0_xy: tuple[int, int], level: int, size_px: tuple[int, int]) -> tuple[int, int, int, int]:
        """Columns/rows [i0, i1) x [j0, j1) of the requested region that lie inside the level."""
        downsample = self.level_downsamples[level]
        width, height = self.level_dimensions[level]
        x_level, y_level = level0_xy[0] / downsample, level0_xy[1] / downsample
        i0 = max(0, math.ceil(-x_level - 1e-9))
        j0 = max(0, math.ceil(-y_level - 1e-9))
        i1 = min(size_px[0], math.floor(width - x_level + 1e-9))
        j1 = min(size_px[1], math.floor(height - y_level + 1e-9))
        return i0, i1, j0, j1

    # -- reading ----------------------------------------------------------------------------
    @abstractmethod
    def _read(self, level0_xy: tuple[int, int], level: int, size_px: tuple[int, int]) -> np.ndarray:
        """Read a region that lies inside the level; (h, w, 3) uint8."""

    def read_region(self, level0_xy: tuple[int, int], level: int, size_px: tuple[int, int]) -> np.ndarray:
        """Read ``size_px`` = (w, h) pixels of ``level`` whose top-left is at level-0 ``level0_xy``.

        Returns:
            (h, w, 3) uint8 RGB; pixels outside the slide are white (255).
        """
        self._check_level(level)
        x, y = int(level0_xy[0]), int(level0_xy[1])
        w, h = int(size_px[0]), int(size_px[1])
        i0, i1, j0, j1 = self._window((x, y), level, (w, h))
        if (i0, j0, i1, j1) == (0, 0, w, h):
            return self._read((x, y), level, (w, h))
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        if i1 > i0 and j1 > j0:
            downsample = self.level_downsamples[level]
            inner_xy = (x + round(i0 * downsample), y + round(j0 * downsample))
            out[j0:j1, i0:i1] = self._read(inner_xy, level, (i1 - i0, j1 - j0))
        return out

    def read_regions(
        self, level0_xys: Sequence[tuple[int, int]], level: int, size_px: tuple[int, int]
    ) -> np.ndarray:
        """Read many same-sized regions of one level.

        Returns:
            (B, h, w, 3) uint8, in the order of ``level0_xys``.
        """
        w, h = int(size_px[0]), int(size_px[1])
        out = np.empty((len(level0_xys), h, w, 3), dtype=np.uint8)
        if self.num_workers > 1 and len(level0_xys) > 1 and self._thread_safe:
            with ThreadPoolExecutor(max_workers=self.num_workers) as pool:
                for index, patch in enumerate(pool.map(lambda xy: self.read_region(xy, level, (w, h)), level0_xys)):
                    out[index] = patch
        else:
            for index, xy in enumerate(level0_xys):
                out[index] = self.read_region(xy, level, (w, h))
        return out

    def thumbnail(self, max_px: int) -> np.ndarray:
        """The whole slide, longest side at most ``max_px``; (h, w, 3) uint8.

        Reads the coarsest level whose longest side is still >= ``max_px`` (level 0 if none is),
        block by block, and box-filters each block down, so memory stays bounded on huge levels.
        """
        from PIL import Image

        level = 0
        for candidate in range(self.level_count - 1, -1, -1):
            if max(self.level_dimensions[candidate]) >= max_px:
                level = candidate
                break
        width, height = self.level_dimensions[level]
        downsample = self.level_downsamples[level]
        scale = min(1.0, max_px / max(width, height))
        out_w, out_h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
        out = np.full((out_h, out_w, 3), 255, dtype=np.uint8)
        for by in range(0, height, _THUMB_BLOCK):
            for bx in range(0, width, _THUMB_BLOCK):
                bw, bh = min(_THUMB_BLOCK, width - bx), min(_THUMB_BLOCK, height - by)
                block = self.read_region((round(bx * downsample), round(by * downsample)), level, (bw, bh))
                x0, x1 = math.floor(bx * scale), min(out_w, math.floor((bx + bw) * scale))
                y0, y1 = math.floor(by * scale), min(out_h, math.floor((by + bh) * scale))
                if x1 <= x0 or y1 <= y0:
                    continue
                if (x1 - x0, y1 - y0) != (bw, bh):
                    block = np.asarray(Image.fromarray(block).resize((x1 - x0, y1 - y0), Image.Resampling.BOX))
                out[y0:y1, x0:x1] = block
        return out

    # -- lifetime ---------------------------------------------------------------------------
    @abstractmethod
    def close(self) -> None:
        """Release the file handle (a second call does nothing); the reader must not be used afterwards."""

    def __enter__(self) -> _BaseReader:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, levels={self.level_count}, mpp={self.mpp})"


_CUCIM: Any = None


def import_cucim() -> Any:
    """Import cuCIM once, keeping its native start-up noise out of the user's terminal and folder.

    Without a GPU, cuCIM's cuFile layer prints "dlopen error libcuda.so.1 ..." / "cuFile initialization
    failed" from C code and writes ``cufile.log`` into the working directory. The log goes to the temp
    folder instead (unless ``CUFILE_LOGFILE_PATH`` is set), and the native stdout/stderr are muted for
    the duration of the import only.
    """
    global _CUCIM
    if _CUCIM is not None:
        return _CUCIM
    import ctypes
    import sys
    import tempfile

    os.environ.setdefault("CUFILE_LOGFILE_PATH", os.path.join(tempfile.gettempdir(), "balnmp-cache-cufile.log"))
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        import cucim

        _open_tiny_tiff(cucim)
        ctypes.CDLL(None).fflush(None)  # C stdio buffers what it printed when stdout is a pipe: drop it here
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
    _CUCIM = cucim
    return cucim


def _open_tiny_tiff(cucim: Any) -> None:
    """Open a 16-px tiled TIFF: cuCIM loads its slide plugin, which prints the same noise, on a first open."""
    import tempfile

    import tifffile

    with tempfile.TemporaryDirectory() as folder, contextlib.suppress(Exception):
        path = os.path.join(folder, "probe.tif")
        tifffile.imwrite(path, np.zeros((16, 16, 3), np.uint8), tile=(16, 16))
        cucim.CuImage(path).close()


class CucimReader(_BaseReader):
    """cuCIM on the CPU: tiled TIFF and Aperio SVS; batched reads through its thread pool."""

    backend = "cucim"

    def __init__(self, path: Path, *, num_workers: int = 2) -> None:
        super().__init__(path, num_workers=num_workers)
        self._image = import_cucim().CuImage(str(self.path))
        resolutions = self._image.resolutions
        self.level_dimensions = tuple((int(w), int(h)) for w, h in resolutions["level_dimensions"])
        self.level_downsamples = tuple(float(d) for d in resolutions["level_downsamples"])
        # cuCIM's own spacing is 1.0 for every SVS: take MPP from a reliable source instead.
        self.mpp, self.magnification = slide_mpp_magnification(self.path)

    def _read(self, level0_xy: tuple[int, int], level: int, size_px: tuple[int, int]) -> np.ndarray:
        region = self._image.read_region(location=level0_xy, size=size_px, level=level)
        return as_rgb(np.asarray(region))

    def read_regions(
        self, level0_xys: Sequence[tuple[int, int]], level: int, size_px: tuple[int, int]
    ) -> np.ndarray:
        self._check_level(level)
        w, h = int(size_px[0]), int(size_px[1])
        out = np.empty((len(level0_xys), h, w, 3), dtype=np.uint8)
        inside: list[int] = []
        for index, xy in enumerate(level0_xys):
            if self._window((int(xy[0]), int(xy[1])), level, (w, h)) == (0, w, 0, h):
                inside.append(index)
            else:
                out[index] = self.read_region(xy, level, (w, h))
        if len(inside) == 1:
            out[inside[0]] = self.read_region(level0_xys[inside[0]], level, (w, h))
        elif inside:
            locations = [(int(level0_xys[i][0]), int(level0_xys[i][1])) for i in inside]
            for index, region in zip(inside, self._read_batch(locations, (w, h), level), strict=True):
                out[index] = region
        return out

    def _read_batch(self, locations: list[tuple[int, int]], size: tuple[int, int], level: int) -> Iterator[np.ndarray]:
        """Regions of one size inside the level, read in one batched call (cuCIM's threads), as RGB uint8.

        Each array is valid until the next one is taken: cuCIM reuses the buffer behind it.
        """
        for region in self._image.read_region(locations, size, level, num_workers=self.num_workers):
            yield as_rgb(np.asarray(region))

    def close(self) -> None:
        image = vars(self).pop("_image", None)  # absent when __init__ failed or after a first close
        if image is not None:
            image.close()


class OpenSlideReader(_BaseReader):
    """OpenSlide: SVS, NDPI, MRXS, SCN, DICOM, generic tiled TIFF. RGBA is composited on white."""

    backend = "openslide"
    _thread_safe = True  # the OpenSlide C library allows concurrent reads on one handle

    def __init__(self, path: Path, *, num_workers: int = 2) -> None:
        super().__init__(path, num_workers=num_workers)
        import openslide

        self._slide = openslide.OpenSlide(str(self.path))
        self.level_dimensions = tuple((int(w), int(h)) for w, h in self._slide.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        props = dict(self._slide.properties)
        self.mpp, self.magnification = properties_mpp_magnification(props, "openslide")
        if self.mpp is None or self.magnification is None:
            mpp, magnification = slide_mpp_magnification(self.path, openslide_props=props)
            self.mpp = self.mpp if self.mpp is not None else mpp
            self.magnification = self.magnification if self.magnification is not None else magnification
        self.ycbcr_fix = dicom_needs_ycbcr_fix(props, self.path)
        if self.ycbcr_fix:
            logger.info("%s: JFIF frames declared RGB; converting OpenSlide's YCbCr values to RGB", self.path.name)

    def _read(self, level0_xy: tuple[int, int], level: int, size_px: tuple[int, int]) -> np.ndarray:
        region = self._slide.read_region(level0_xy, level, size_px)
        if self.ycbcr_fix:
            from PIL import Image

            alpha = region.getchannel("A")
            region = Image.merge("YCbCr", region.convert("RGB").split()).convert("RGB")
            region.putalpha(alpha)
        return as_rgb(np.asarray(region))

    def close(self) -> None:
        slide = vars(self).pop("_slide", None)  # absent when __init__ failed or after a first close
        if slide is not None:
            slide.close()


class TiffSlideReader(_BaseReader):
    """tiffslide (tifffile + imagecodecs): JPEG2000/WebP tiles, OME-TIFF, anything tifffile decodes."""

    backend = "tiffslide"

    def __init__(self, path: Path, *, num_workers: int = 2) -> None:
        super().__init__(path, num_workers=num_workers)
        import warnings

        import tiffslide

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "vendor metadata parsing partially implemented"
            self._slide = tiffslide.TiffSlide(str(self.path))
        self.level_dimensions = tuple((int(w), int(h)) for w, h in self._slide.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
        self.mpp, self.magnification = slide_mpp_magnification(self.path)

    def _read(self, level0_xy: tuple[int, int], level: int, size_px: tuple[int, int]) -> np.ndarray:
        return as_rgb(self._slide.read_region(level0_xy, level, size_px, as_array=True))

    def close(self) -> None:
        slide = vars(self).pop("_slide", None)  # absent when __init__ failed or after a first close
        if slide is not None:
            slide.close()


class PilReader(_BaseReader):
    """Plain images (JPEG, PNG, BMP, single-page untiled TIFF), decoded once into memory.

    BCNB slides are single-resolution JPEGs of up to ~20k px per side (about 1.2 GB decoded); they
    have no pyramid and no MPP, so there is one level and ``mpp`` is ``None``.
    """

    backend = "pil"
    _thread_safe = False  # slicing an in-memory array gains nothing from threads

    def __init__(self, path: Path, *, num_workers: int = 2) -> None:
        super().__init__(path, num_workers=num_workers)
        from PIL import Image

        if self.path.suffix.lower() in {".tif", ".tiff"}:
            _require_plain_tiff(self.path)
        # Whole-slide JPEGs exceed PIL's decompression-bomb limit by design: lift it for this file only.
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(self.path) as image:
                image.load()
                if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
                    array = as_rgb(np.asarray(image.convert("RGBA")))
                else:
                    array = np.asarray(image.convert("RGB"))
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        self._array = array  # (H, W, 3) uint8
        self.level_dimensions = ((int(array.shape[1]), int(array.shape[0])),)
        self.level_downsamples = (1.0,)

    def _read(self, level0_xy: tuple[int, int], level: int, size_px: tuple[int, int]) -> np.ndarray:
        x, y = level0_xy
        return self._array[y : y + size_px[1], x : x + size_px[0]].copy()

    def close(self) -> None:
        self._array = np.empty((0, 0, 3), dtype=np.uint8)


def _require_plain_tiff(path: Path) -> None:
    """PIL decodes a whole page at once: refuse tiled or multi-page (pyramidal) TIFFs."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if len(tif.pages) > 1 or tif.pages.first.is_tiled:
            raise ValueError("PIL reads only single-page untiled TIFF; this one is tiled or pyramidal")
