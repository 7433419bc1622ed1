"""JPEG decoding on the GPU (``--decode cuda``, the default when the encoder runs on a GPU).

Two inputs are JPEGs that the CPU would otherwise decode while the GPU waits:

* **pre-cut patches** (BCNB ``patches/<pid>/*.jpg``): the reader thread reads the files' bytes and
  :func:`decode_patches` decodes them as one batch with ``torchvision.io.decode_jpeg(list, device=
  "cuda")`` (nvJPEG); a patch of another size is resized to ``patch_px`` on the GPU with antialiased
  bilinear interpolation (the CPU path: PIL bilinear). The batch stays on the GPU: the encoder's eval
  transform (resize to ``input_px`` and normalisation) runs there too, without a host copy.
* **plain-JPEG slides** (BCNB ``WSIs/<pid>.jpg``, up to ~20k px a side): :class:`NvjpegReader`
  decodes the whole image on the GPU and keeps it in host memory, where the tiler, the polygon masks
  and the patch filter read it exactly as they read PIL's decode.
* **tiled TIFF and SVS slides with JPEG tiles**: :class:`CucimGpuReader` reads each batch of patches
  with cuCIM's ``read_region(..., device="cuda")`` (the compressed tiles decoded by nvJPEG) and hands
  the decoded batch to host memory for the masks and the filter, as the CPU readers do. Other tile
  codecs (Aperio JPEG 2000, LZW, ...), OME-TIFF and patches that cross the slide's edge are read on
  the CPU. Before use, two batched regions are compared with the CPU reader that would otherwise read
  the slide; a GPU decode that differs by more than a grey level on average is not used.

Everything here runs on the default CUDA stream, so work queued by the reader thread is ordered
before the encoder's use of it without further synchronisation. nvJPEG's IDCT and chroma upsampling
differ from libjpeg-turbo's in the last grey level, which is why ``decode = cuda`` is part of the
cache key; ``tests/extract/test_gpu_decode.py`` (``-m gpu``) measures the pixel and feature parity.
A JPEG that nvJPEG refuses (CMYK, some progressive or lossless variants) is decoded by PIL instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.slides.backends import CucimReader, PilReader, as_rgb

__all__ = ["JPEG_SUFFIXES", "CucimGpuReader", "NvjpegReader", "decode_patches", "gpu_resize", "jpeg_tiled",
           "open_jpeg_on_gpu", "open_on_gpu"]

log = logging.getLogger(__name__)

JPEG_SUFFIXES = (".jpg", ".jpeg")
TILED_SUFFIXES = (".svs", ".tif", ".tiff")
PARITY_LEVELS = 1.0  # the most a GPU decode may differ from the CPU's, in mean grey levels


def _decode(datas: Sequence[bytes]) -> list[Any]:
    """JPEG bytes -> (3, H, W) uint8 RGB tensors on the GPU (nvJPEG, one batched call)."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
    images = decode_jpeg(tensors, mode=ImageReadMode.RGB, device="cuda")
    return list(images) if isinstance(images, (list, tuple)) else [images]


def gpu_resize(images: Any, px: int) -> Any:
    """(B, 3, h, w) uint8 on the GPU -> (B, 3, px, px) uint8: antialiased bilinear, rounded (PIL's rule)."""
    import torch.nn.functional as F

    if tuple(images.shape[-2:]) == (px, px):
        return images
    x = F.interpolate(images.float(), size=(px, px), mode="bilinear", align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255).to(images.dtype)


def decode_patches(datas: Sequence[bytes], patch_px: int) -> Any:
    """JPEG bytes of patches -> (B, patch_px, patch_px, 3) uint8 on the GPU (a view of (B, 3, px, px)).

    Patches of another size are resized one by one; the batch is synchronised before it is returned,
    so its decode time is measured and the reader thread can hand it on.
    """
    import torch

    images = [gpu_resize(image[None], patch_px)[0] for image in _decode(datas)]
    batch = torch.stack(images)  # (B, 3, px, px)
    torch.cuda.current_stream().synchronize()
    return batch.permute(0, 2, 3, 1)  # (B, px, px, 3), the layout of the CPU path


class NvjpegReader(PilReader):
    """A plain-JPEG slide decoded whole on the GPU, then read like :class:`PilReader` from host memory.

    Raises:
        RuntimeError: nvJPEG cannot decode the file (the caller falls back to PIL).
    """

    backend = "nvjpeg"

    def __init__(self, path: Path, *, num_workers: int = 2) -> None:
        super(PilReader, self).__init__(path, num_workers=num_workers)  # PilReader's own __init__ decodes with PIL
        (image,) = _decode([self.path.read_bytes()])  # (3, H, W) on the GPU
        self._array = np.ascontiguousarray(image.permute(1, 2, 0).cpu().numpy())  # (H, W, 3) uint8
        del image
        self.level_dimensions = ((int(self._array.shape[1]), int(self._array.shape[0])),)
        self.level_downsamples = (1.0,)


def open_jpeg_on_gpu(path: Path, *, num_workers: int) -> NvjpegReader | None:
    """An :class:`NvjpegReader` of ``path``, or ``None`` when nvJPEG cannot decode it (then PIL does)."""
    try:
        return NvjpegReader(path, num_workers=num_workers)
    except (RuntimeError, ValueError) as err:
        log.info("%s: nvJPEG could not decode it (%s); decoding it on the CPU", Path(path).name, err)
        return None


class CucimGpuReader(CucimReader):
    """cuCIM with batched reads decoded on the GPU (nvJPEG); single and edge regions stay on the CPU."""

    backend = "cucim-cuda"

    def _read_batch(self, locations: list[tuple[int, int]], size: tuple[int, int], level: int) -> Iterator[np.ndarray]:
        import torch

        regions = self._image.read_region(locations, size, level, num_workers=self.num_workers, device="cuda")
        # each region's device buffer is reused for the next one: copied as it comes
        batch = torch.stack([torch.as_tensor(region, device="cuda").clone() for region in regions])  # (B, h, w, C)
        return iter([as_rgb(array) for array in batch.cpu().numpy()])


def jpeg_tiled(path: Path) -> bool:
    """Whether every level of the slide's main image is stored as JPEG tiles (what cuCIM decodes on the GPU)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tiff:
            pages = [level.pages[0] for level in tiff.series[0].levels]
            return all(isinstance(page, tifffile.TiffPage) and page.is_tiled
                       and page.compression == tifffile.COMPRESSION.JPEG for page in pages)
    except (OSError, ValueError, IndexError, tifffile.TiffFileError):
        return False


def _gpu_matches_cpu(reader: CucimGpuReader, path: Path) -> bool:
    """Two batched 64-px regions at the slide's centre agree with the CPU reader ``open_slide`` picks."""
    from balnmp_cache.slides import open_slide

    width, height = reader.dimensions
    side = min(64, width // 2, height // 2)
    cx, cy = width // 2 - side, height // 2 - side
    locations = [(cx, cy), (cx + side, cy + side)]
    gpu = np.stack(list(reader._read_batch(locations, (side, side), 0))).astype(np.int16)
    with open_slide(path, num_workers=1) as reference:  # colour-checked against tifffile where it matters
        cpu = reference.read_regions(locations, 0, (side, side)).astype(np.int16)
    return gpu.shape == cpu.shape and float(np.abs(gpu - cpu).mean()) <= PARITY_LEVELS


def open_tiled_on_gpu(path: Path, *, num_workers: int) -> CucimGpuReader | None:
    """A :class:`CucimGpuReader` of a JPEG-tiled slide, or ``None`` (then the CPU readers open it)."""
    if not jpeg_tiled(path):
        log.info("%s: its tiles are not JPEG; decoding them on the CPU", Path(path).name)
        return None
    reader = None
    try:
        reader = CucimGpuReader(path, num_workers=num_workers)
        if _gpu_matches_cpu(reader, path):
            return reader
        problem = f"its GPU decode differs from the CPU's by more than {PARITY_LEVELS:g} grey level"
    except Exception as err:  # cuCIM missing, or no GPU decode for this file: the CPU path reads it
        problem = f"cuCIM cannot decode it on the GPU ({(str(err).strip() or type(err).__name__).splitlines()[0]})"
    if reader is not None:
        reader.close()
    log.info("%s: %s; decoding it on the CPU", Path(path).name, problem)
    return None


def open_on_gpu(path: Path, *, num_workers: int) -> Any:
    """A reader that decodes ``path`` on the GPU (plain JPEG, or JPEG-tiled TIFF/SVS), else ``None``."""
    from balnmp_cache.slides.readers import slide_suffix

    suffix = slide_suffix(Path(path))  # .ome.tif is not cuCIM's: its colours are read by tiffslide
    if suffix in JPEG_SUFFIXES:
        return open_jpeg_on_gpu(path, num_workers=num_workers)
    if suffix in TILED_SUFFIXES:
        return open_tiled_on_gpu(path, num_workers=num_workers)
    return None
