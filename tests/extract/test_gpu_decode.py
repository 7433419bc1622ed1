"""GPU input path (``--decode cuda``): nvJPEG decode and the GPU resize against the CPU path, on real images.

Runs only where a CUDA GPU is usable: ``pytest -m gpu tests/extract/test_gpu_decode.py`` (add ``-s`` to
print the measured differences). Inputs: the BALNMP sample tumour-region crops from ``../shared/data``
(real BCNB JPEGs) read as plain-JPEG slides, and 256-px patches cut from them and saved as JPEGs
the way the official ``cut_patches.py`` saves them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from balnmp_cache.cache import read_slide
from balnmp_cache.extract import run_extract
from tests.conftest import shared_file
from tests.extract.conftest import config

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (pytest -m gpu on a GPU machine)"),
]

REGIONS = "balnmp_samples/N_plus_gt2/351899/351899_tumour_regions"
MAX_MEAN_ABS_LEVELS = 1.0  # nvJPEG vs libjpeg-turbo: IDCT and chroma upsampling differ in the last grey level
MIN_COSINE = 0.995


def _region_jpegs() -> list[Path]:
    folder = shared_file(REGIONS)
    return sorted(folder.glob("*.jpg"))


def _cut_patches(tmp_path: Path, count: int = 24) -> Path:
    """256-px patches of the first region crop, saved as JPEG (quality 95) in BCNB's layout."""
    from PIL import Image

    region = np.asarray(Image.open(_region_jpegs()[0]).convert("RGB"))
    folder = tmp_path / "patches" / "351899"
    folder.mkdir(parents=True)
    h, w = region.shape[:2]
    made = 0
    for y in range(0, h - 256, 256):
        for x in range(0, w - 256, 256):
            patch = region[y : y + 256, x : x + 256]
            if (patch == 255).mean() < 0.3 and made < count:
                Image.fromarray(patch).save(folder / f"351899_0_{x}_{y}.jpg", quality=95)
                made += 1
    assert made >= 8, "the sample region holds too little tissue for the parity test"
    return folder.parent


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_nvjpeg_decodes_real_jpegs_within_a_grey_level_of_pil():
    from PIL import Image

    from balnmp_cache.extract.gpu_decode import NvjpegReader, decode_patches

    for path in _region_jpegs():
        cpu = np.asarray(Image.open(path).convert("RGB"))
        with NvjpegReader(path) as reader:
            gpu = reader._array
        assert gpu.shape == cpu.shape and reader.backend == "nvjpeg"
        mad = _mean_abs(gpu, cpu)
        worst = np.abs(gpu.astype(int) - cpu).max()
        print(f"{path.name}: nvJPEG vs PIL mean |diff| = {mad:.3f} grey levels, max {worst}")
        assert mad <= MAX_MEAN_ABS_LEVELS
    data = [p.read_bytes() for p in _region_jpegs()]
    batch = decode_patches(data, 224)  # each region resized to 224 on the GPU, antialiased
    assert tuple(batch.shape) == (len(data), 224, 224, 3) and batch.device.type == "cuda"
    for row, path in enumerate(_region_jpegs()):
        cpu = np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
        mad = _mean_abs(batch[row].cpu().numpy(), cpu)
        print(f"{path.name}: GPU decode + resize vs PIL mean |diff| = {mad:.3f}")
        assert mad <= 2 * MAX_MEAN_ABS_LEVELS


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float32), b.astype(np.float32)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_features_from_the_gpu_path_match_the_cpu_path(tmp_path):
    patches = _cut_patches(tmp_path)
    slide = _region_jpegs()[1]
    runs = {}
    for decode in ("cpu", "cuda"):
        runs[decode] = run_extract(config([patches, slide], tmp_path / decode, device="cuda", decode=decode,
                                          batch_size=16))
        assert runs[decode].exit_code == 0 and runs[decode].n_ok == 2
    assert runs["cpu"].cache_dir.name != runs["cuda"].cache_dir.name  # decode = cuda is part of the key
    for sid in ("351899", slide.stem):
        cpu, gpu = (read_slide(runs[d].cache_dir / f"{sid}.h5") for d in ("cpu", "cuda"))
        assert list(cpu.patch_key) == list(gpu.patch_key) and cpu.coords.tobytes() == gpu.coords.tobytes()
        cosine = _cosines(cpu.features, gpu.features)
        print(f"{sid}: {len(cosine)} patches, feature cosine GPU vs CPU decode min {cosine.min():.5f} "
              f"mean {cosine.mean():.5f}")
        assert cosine.min() >= MIN_COSINE
        assert gpu.attrs["decode"] == "cuda" and "decode" not in cpu.attrs
    assert read_slide(runs["cuda"].cache_dir / f"{slide.stem}.h5").attrs["reader"] == "nvjpeg"
    times = runs["cuda"].times
    assert times.decode > 0 and times.forward > 0
    assert runs["cpu"].times.h2d > 0  # pinned host batches copied to the device


def test_batches_spanning_slides_on_the_gpu_agree_with_one_slide_alone(tmp_path):
    patches = _cut_patches(tmp_path)
    slide = _region_jpegs()[1]
    together = run_extract(config([patches, slide], tmp_path / "together", device="cuda", batch_size=16))
    alone = run_extract(config([slide], tmp_path / "alone", device="cuda", batch_size=16))
    a = read_slide(together.cache_dir / f"{slide.stem}.h5")
    b = read_slide(alone.cache_dir / f"{slide.stem}.h5")
    assert list(a.patch_key) == list(b.patch_key)
    cosine = _cosines(a.features, b.features)
    print(f"{slide.stem}: batch composition on the GPU changes features by cosine >= {cosine.min():.6f}")
    assert cosine.min() >= 0.999


JPEG_SVS = "wsi/aperio_svs/CMU-1-Small-Region.svs"  # Aperio SVS with JPEG tiles: cuCIM decodes them with nvJPEG


def test_cucim_gpu_decode_of_jpeg_tiles_matches_the_cpu_reader():
    from balnmp_cache.extract.gpu_decode import CucimGpuReader, open_on_gpu
    from balnmp_cache.slides import open_slide

    path = shared_file(JPEG_SVS)
    reader = open_on_gpu(path, num_workers=2)
    assert isinstance(reader, CucimGpuReader) and reader.backend == "cucim-cuda"
    with reader, open_slide(path) as cpu:
        width, height = reader.dimensions
        grid = [(x, y) for y in range(0, height - 256, 256) for x in range(0, width - 256, 256)][:32]
        gpu_patches, cpu_patches = reader.read_regions(grid, 0, (256, 256)), cpu.read_regions(grid, 0, (256, 256))
    mad = _mean_abs(gpu_patches, cpu_patches)
    print(f"{path.name}: {len(grid)} patches, cuCIM GPU vs {cpu.backend} CPU mean |diff| = {mad:.3f} grey levels")
    assert gpu_patches.shape == cpu_patches.shape and mad <= MAX_MEAN_ABS_LEVELS


def test_features_of_a_jpeg_tiled_slide_decoded_on_the_gpu_match_the_cpu_path(tmp_path):
    path = shared_file(JPEG_SVS)
    runs = {d: run_extract(config([path], tmp_path / d, device="cuda", decode=d, batch_size=32))
            for d in ("cpu", "cuda")}
    cpu, gpu = (read_slide(runs[d].cache_dir / f"{path.stem}.h5") for d in ("cpu", "cuda"))
    assert gpu.attrs["reader"] == "cucim-cuda" and cpu.attrs["reader"] != "cucim-cuda"
    common = sorted(set(cpu.patch_key) & set(gpu.patch_key))  # the patch filter may differ on a borderline patch
    assert len(common) >= 0.98 * len(cpu.patch_key) > 0
    rows_cpu = [list(cpu.patch_key).index(k) for k in common]
    rows_gpu = [list(gpu.patch_key).index(k) for k in common]
    cosine = _cosines(cpu.features[rows_cpu], gpu.features[rows_gpu])
    print(f"{path.name}: {len(common)} of {len(cpu.patch_key)} patches kept by both, feature cosine min "
          f"{cosine.min():.5f} mean {cosine.mean():.5f}")
    assert cosine.min() >= MIN_COSINE
