"""Which slides ``--decode cuda`` decodes on the GPU, and that the others (or every slide, where cuCIM
cannot reach a GPU) fall back to the CPU readers with one log line instead of failing."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from balnmp_cache.extract.gpu_decode import jpeg_tiled, open_on_gpu
from tests.conftest import shared_file

JPEG_SVS = "wsi/aperio_svs/CMU-1-Small-Region.svs"
JP2K_SVS = "wsi/aperio_svs/tcga-cr-7395-01a-01-ts1.svs"


def _gpu_usable() -> bool:
    torch = pytest.importorskip("torch")
    return bool(torch.cuda.is_available())


def test_jpeg_tiles_are_told_from_other_codecs(tmp_path):
    import tifffile

    assert jpeg_tiled(shared_file(JPEG_SVS))
    assert not jpeg_tiled(shared_file(JP2K_SVS))  # Aperio JPEG 2000: nvJPEG cannot decode it
    lzw = tmp_path / "lzw.tif"
    tifffile.imwrite(lzw, np.zeros((512, 512, 3), np.uint8), tile=(256, 256), compression="lzw")
    assert not jpeg_tiled(lzw)
    (tmp_path / "broken.tif").write_bytes(b"not a tiff")
    assert not jpeg_tiled(tmp_path / "broken.tif")


def test_a_slide_the_gpu_cannot_decode_is_left_to_the_cpu_readers(caplog):
    caplog.set_level(logging.INFO, logger="balnmp_cache.extract.gpu_decode")
    assert open_on_gpu(shared_file(JP2K_SVS), num_workers=1) is None
    assert "its tiles are not JPEG" in caplog.text
    assert open_on_gpu(shared_file("wsi/ome_tiff/OS-1-detail.ome.tif"), num_workers=1) is None  # tiffslide's


def test_without_a_gpu_a_jpeg_tiled_slide_falls_back_with_one_line(caplog):
    pytest.importorskip("cucim")
    if _gpu_usable():
        pytest.skip("a GPU is here: tests/extract/test_gpu_decode.py covers the GPU path")
    caplog.set_level(logging.INFO, logger="balnmp_cache.extract.gpu_decode")
    assert open_on_gpu(shared_file(JPEG_SVS), num_workers=1) is None
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("CMU-1-Small-Region.svs: cuCIM cannot decode it on the GPU (") and "on the CPU" in line
