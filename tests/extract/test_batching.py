"""Batches that span slides: full batches whatever the slide sizes, features split back per slide, and a
patch's features independent of the batch it shared (so a resumed cache equals an uninterrupted one)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from balnmp_cache.cache import read_manifest, read_slide
from balnmp_cache.extract import run_extract
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.extract.encode import BatchEncoder
from tests.extract.conftest import config, write_precut_cohort

SIZES = [3, 1, 6, 2, 5, 4, 2]  # 23 patches: batches of 8 take patches of two to four slides


@pytest.fixture(params=[None, 1], ids=["default-threads", "one-thread"])
def torch_threads(request):
    """The test once with torch's threads as they are and once with one (as on a one-CPU Ray worker)."""
    import torch

    before = torch.get_num_threads()
    if request.param:
        torch.set_num_threads(request.param)
    yield
    torch.set_num_threads(before)


def test_batches_are_full_and_span_slides_and_each_slide_gets_its_own_features(tmp_path, torch_threads):
    patches = write_precut_cohort(tmp_path / "bcnb", SIZES)
    result = run_extract(config([patches], tmp_path / "cache", batch_size=8, patch_px=64))
    assert (result.n_ok, result.n_patches, result.exit_code) == (len(SIZES), sum(SIZES), 0)
    assert result.n_batches == math.ceil(sum(SIZES) / 8)  # per-slide batches would have been 7
    alone = {}
    for i in (0, 2, 6):  # a slide at the start of a batch, one split across two, the last
        one = tmp_path / f"alone{i}" / "patches"
        (one / f"p{i:03d}").mkdir(parents=True)
        for f in sorted((patches / f"p{i:03d}").iterdir()):
            (one / f"p{i:03d}" / f.name).write_bytes(f.read_bytes())
        alone[i] = run_extract(config([one], tmp_path / f"cache-alone{i}", batch_size=8, patch_px=64))
    for i, single in alone.items():
        together = read_slide(result.cache_dir / f"p{i:03d}.h5")
        by_itself = read_slide(single.cache_dir / f"p{i:03d}.h5")
        assert together.n_patches == SIZES[i] and list(together.patch_key) == list(by_itself.patch_key)
        # bit-identical: the bytes of a patch do not depend on the batch it shared (see extract/batches.py)
        assert together.features.tobytes() == by_itself.features.tobytes()
    rows = {r.slide_id: r for r in read_manifest(result.cache_dir)}
    assert [rows[f"p{i:03d}"].n_patches for i in range(len(SIZES))] == SIZES
    assert not (result.cache_dir / ".journal.jsonl").exists()  # compacted at the end of the run


def test_a_patch_encodes_to_the_same_bits_in_any_batch_on_the_cpu():
    runner = BatchEncoder.build(ExtractConfig(weights="random", encoder="resnet18", device="cpu", precision="auto"))
    patches = np.random.default_rng(0).integers(0, 255, (20, 64, 64, 3), dtype=np.uint8)
    reference = runner(patches[:16])
    shifted = runner(patches[4:20])  # other neighbours, other positions
    split = runner.submit([patches[5:7], patches[7:12]]).result()  # a short batch assembled from two slides
    assert shifted[:12].tobytes() == reference[4:16].tobytes()
    assert split.tobytes() == reference[5:12].tobytes()


def test_a_short_batch_padded_to_the_batch_size_encodes_to_the_bits_of_a_full_one(torch_threads):
    # EfficientNet-Lite0's 1x1 convolutions are where oneDNN's kernels follow the batch size on some CPUs
    runner = BatchEncoder.build(ExtractConfig(weights="random", encoder="efficientnet_lite0", device="cpu"))
    patches = np.random.default_rng(1).integers(0, 255, (16, 64, 64, 3), dtype=np.uint8)
    reference = runner(patches)
    short = runner.submit([patches[3:6], patches[6:9]], pad_to=16).result()
    assert short.shape == (6, reference.shape[1])
    assert short.tobytes() == reference[3:9].tobytes()


def test_a_slide_that_fails_inside_a_shared_batch_fails_alone(tmp_path):
    patches = write_precut_cohort(tmp_path / "bcnb", [3, 3, 3])
    broken = sorted((patches / "p001").iterdir())[1]
    broken.write_bytes(b"not a jpeg")
    result = run_extract(config([patches], tmp_path / "cache", batch_size=8, patch_px=64))
    rows = {r.slide_id: r for r in read_manifest(result.cache_dir)}
    assert (rows["p000"].status, rows["p001"].status, rows["p002"].status) == ("ok", "failed", "ok")
    assert "UnidentifiedImageError" in rows["p001"].reason or "cannot identify" in rows["p001"].reason
    assert result.n_patches == 6 and result.exit_code == 1
    assert not (result.cache_dir / "p001.h5").exists()
    assert read_slide(result.cache_dir / "p002.h5").n_patches == 3


def test_every_stage_reports_its_seconds_and_the_loader_wait(tmp_path):
    patches = write_precut_cohort(tmp_path / "bcnb", [4, 4])
    result = run_extract(config([patches], tmp_path / "cache", batch_size=4, patch_px=64))
    times = result.times
    assert times.read > 0 and times.decode > 0 and times.forward > 0 and times.write > 0
    assert times.h2d == 0  # the CPU path copies nothing to a device
    assert 0 <= result.loader_wait <= 1 and times.loop >= times.forward
    assert "the encoder waited for input" in times.summary()


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_precut_decoding_gives_pil_rgb_pixels_for_every_jpeg_mode(tmp_path, mode):
    import io

    from PIL import Image

    from balnmp_cache.extract.precut import _pil_decode

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (300, 280, len(mode)), dtype=np.uint8).squeeze()
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format="JPEG", quality=90)
    expected = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").resize((256, 256), Image.Resampling.BILINEAR)
    decoded, _ = _pil_decode(buffer.getvalue(), 256)
    assert decoded.shape == (256, 256, 3) and np.array_equal(decoded, np.asarray(expected))
