"""Pre-cut BCNB patches (``patches/<pid>/<pid>_<region>_<x>_<y>.jpg``) as batches for the encoder.

Exactly these patches are embedded, keyed by their official relative path, with their level-0
coordinates when the slide's polygon JSON (``WSIs/<pid>.json``) is beside them. A pool of threads
reads the files' bytes; they are decoded by PIL on those threads (``decode = cpu``) or as one batch
by nvJPEG (``decode = cuda``, :mod:`balnmp_cache.extract.gpu_decode`). The reader thread's wall time
of a batch is split between ``read`` and ``decode`` in proportion to the threads' seconds in each.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.errors import SlideError
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.slides import SlideJob, load_regions, parse_patch_name, patch_key

__all__ = ["Batch", "precut_attrs", "precut_batches", "region_origins"]


@dataclass
class Batch:
    """Kept patches of one slide: (B, patch_px, patch_px, 3) uint8 (numpy, or a tensor on the GPU),
    their level-0 positions, polygons and keys, and the reader thread's seconds."""

    job: SlideJob
    patches: Any
    coords: np.ndarray  # (B, 2) int64 level-0 top-left
    region_id: np.ndarray  # (B,) int32
    patch_key: list[str]
    read_seconds: float
    decode_seconds: float = 0.0


def _read(path: Path) -> tuple[bytes, float]:
    t0 = time.perf_counter()
    return path.read_bytes(), time.perf_counter() - t0


def _pil_decode(data: bytes, px: int) -> tuple[np.ndarray, float]:
    from PIL import Image

    t0 = time.perf_counter()
    with Image.open(io.BytesIO(data)) as image:
        rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert would copy an RGB JPEG
        if rgb.size != (px, px):
            rgb = rgb.resize((px, px), Image.Resampling.BILINEAR)
        array = np.asarray(rgb)
    return array, time.perf_counter() - t0


def precut_attrs(job: SlideJob, config: ExtractConfig, *, level0: bool) -> dict[str, Any]:
    """The provenance attributes of a patient's pre-cut patches."""
    mpp = job.mpp if job.mpp is not None else config.slide_mpp
    return dict(
        reader="pil", level=0, downsample=1.0, patch_level0_px=config.patch_px,
        mpp=float("nan") if mpp is None else float(mpp), mpp_source="none" if mpp is None else "override",
        magnification=float("nan"), slide_width=-1, slide_height=-1, roi_source="pre-cut BCNB patches",
        coords_frame="level0" if level0 else "region_offset",
    )


def _positions(job: SlideJob, files: tuple[Path, ...], origins: dict[int, tuple[int, int]] | None) -> tuple[
    np.ndarray, np.ndarray
]:
    parsed = [parse_patch_name(f) for f in files]
    region = np.array([p[1] for p in parsed], dtype=np.int32)
    offsets = np.array([(p[2], p[3]) for p in parsed], dtype=np.int64).reshape(-1, 2)
    if origins is not None:
        missing = sorted({int(r) for r in region} - set(origins))
        if missing:
            raise SlideError(
                f"patches of {job.slide_id} name regions {missing} that its WSIs/{job.slide_id}.json lacks"
            )
        offsets = offsets + np.array([origins[int(r)] for r in region], dtype=np.int64).reshape(-1, 2)
    return offsets, region


def precut_batches(
    job: SlideJob, config: ExtractConfig, pool: ThreadPoolExecutor, *, origins: dict[int, tuple[int, int]] | None,
    on_gpu: bool,
) -> Iterator[Batch]:
    """The patient's patches in batches of ``config.batch_size``, decoded on the CPU or the GPU."""
    px = config.patch_px
    for start in range(0, len(job.patch_files), config.batch_size):
        t0 = time.perf_counter()
        files = job.patch_files[start : start + config.batch_size]
        read = list(pool.map(_read, files))
        read_s = sum(seconds for _, seconds in read)
        if on_gpu:
            from balnmp_cache.extract.gpu_decode import decode_patches

            t1 = time.perf_counter()
            patches: Any = decode_patches([data for data, _ in read], px)
            decode_s = time.perf_counter() - t1
        else:
            decoded = list(pool.map(lambda item: _pil_decode(item[0], px), read))
            patches = np.stack([array for array, _ in decoded])
            decode_s = sum(seconds for _, seconds in decoded)
        wall = time.perf_counter() - t0
        coords, region = _positions(job, files, origins)
        share = decode_s / (read_s + decode_s) if read_s + decode_s > 0 else 0.0
        yield Batch(job, patches, coords, region, [patch_key(f) for f in files], wall * (1 - share), wall * share)


def region_origins(job: SlideJob) -> dict[int, tuple[int, int]] | None:
    """Region id -> level-0 corner of each polygon's official crop, from the BCNB ``WSIs/<pid>.json``.

    Looked up beside the patches folder's parent (``<root>/patches`` + ``<root>/WSIs``) and one level
    higher (``<root>/paper_patches/patches``). The corner is the minimum of the polygon's vertices,
    clamped at 0 (upstream issue #6), which is also the origin the tiler uses (``Region.origin``).
    """
    patches_dir = job.path.parent
    candidates = [
        patches_dir.parent / "WSIs" / f"{job.slide_id}.json",
        patches_dir.parent.parent / "WSIs" / f"{job.slide_id}.json"
    ]
    annotation = next((c for c in candidates if c.is_file()), None)
    if annotation is None:
        return None
    origins = {}
    for region in load_regions(annotation):
        corner = np.maximum(np.rint(region.vertices).min(axis=0), 0).astype(np.int64)
        origins[region.region_id] = (int(corner[0]), int(corner[1]))
    return origins
