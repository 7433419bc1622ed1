"""Readers on the real third-party slides in ../shared/data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from balnmp_cache.errors import SlideError
from balnmp_cache.slides import (
    open_slide,
    passes_white_filter,
    plan_resolution,
    region_candidates,
)
from balnmp_cache.slides.annotations import Region
from tests.conftest import shared_file

CMU_SVS = "wsi/aperio_svs/CMU-1-Small-Region.svs"
TCGA_J2K_SVS = "wsi/aperio_svs/tcga-cr-7395-01a-01-ts1.svs"
OME_TIFF = "wsi/ome_tiff/OS-1-detail.ome.tif"
NDPI = "wsi/hamamatsu_ndpi/test3-DAPI-2-387.ndpi"
DICOM_DIR = "wsi/dicom_wsi_cmu1_small_region"
DICOM_NONCONFORMANT = "wsi/dicom_tcga_pathml/small_dicom.dcm"
SAMPLES = "balnmp_samples/N_plus_gt2"


def _region(reader, xy=(800, 1200), size=(96, 80)) -> np.ndarray:
    return reader.read_region(xy, 0, size).astype(np.int16)


def test_cmu_svs_via_cucim_with_metadata_mpp() -> None:
    path = shared_file(CMU_SVS)
    with open_slide(path) as reader:
        assert reader.backend == "cucim"
        assert reader.dimensions == (2220, 2967)
        assert reader.mpp == pytest.approx(0.499)  # cuCIM itself says 1.0
        assert reader.magnification == pytest.approx(20.0)
        pixels = _region(reader)
        edge = reader.read_region((2200, 2950), 0, (64, 64))
    assert (edge[17:] == 255).all() and (edge[:, 20:] == 255).all()
    for backend in ("openslide", "tiffslide"):
        with open_slide(path, backend=backend) as other:
            np.testing.assert_array_equal(_region(other), pixels)
            assert other.mpp == pytest.approx(0.499)


def test_jpeg2000_svs_reads_like_tiffslide_and_has_no_mpp() -> None:
    path = shared_file(TCGA_J2K_SVS)
    with open_slide(path, backend="tiffslide") as reference:
        expected = [reference.read_region((2000, 1500), 0, (128, 128)), reference.read_region((1000, 800), 1, (64, 64))]
    with open_slide(path) as reader:
        assert reader.dimensions == (4443, 3567) and reader.level_count == 2
        assert reader.mpp is None and reader.magnification is None
        np.testing.assert_array_equal(reader.read_region((2000, 1500), 0, (128, 128)), expected[0])
        np.testing.assert_array_equal(reader.read_region((1000, 800), 1, (64, 64)), expected[1])
        assert expected[0].std() > 10  # real tissue, not a blank tile
        with pytest.raises(SlideError, match=r"target MPP 0\.5 asked for but .* has no MPP metadata; pass --slide-mpp"):
            plan_resolution(reader, patch_px=256, target_mpp=0.5)
        plan = plan_resolution(reader, patch_px=256, target_mpp=0.5, slide_mpp=0.25)
    assert (plan.read_level, plan.patch_level0_px, plan.read_px, plan.mpp_source) == (1, 512, 256, "override")


def test_ome_tiff_via_tiffslide_and_cucim_colours_rejected() -> None:
    path = shared_file(OME_TIFF)
    with open_slide(path) as reader:
        assert reader.backend == "tiffslide"
        assert reader.dimensions == (1101, 1101)
        assert reader.mpp == pytest.approx(0.2271, abs=1e-4)
        import tifffile

        np.testing.assert_array_equal(reader.read_region((0, 0), 0, (1101, 1101)), tifffile.imread(path))
    with pytest.raises(SlideError, match=r"cucim: .*differ from tifffile"):
        open_slide(path, backend="cucim")
    with pytest.raises(SlideError, match="openslide"):
        open_slide(path, backend="openslide")


def test_ndpi_via_openslide() -> None:
    path = shared_file(NDPI)
    with open_slide(path) as reader:
        assert reader.backend == "openslide"
        assert reader.dimensions == (3968, 4864) and reader.level_count == 7
        assert reader.mpp == pytest.approx(0.22818, abs=1e-4)
        assert reader.magnification == pytest.approx(40.0)
        thumb = reader.thumbnail(256)
        assert max(thumb.shape[:2]) <= 256
        batch = reader.read_regions([(0, 0), (1024, 1024), (3900, 4800)], 2, (64, 64))
        assert batch.shape == (3, 64, 64, 3)
        np.testing.assert_array_equal(batch[1], reader.read_region((1024, 1024), 2, (64, 64)))


def test_dicom_folder_via_openslide_with_colours_fixed() -> None:
    folder = shared_file(DICOM_DIR)
    svs = shared_file(CMU_SVS)
    with open_slide(svs, backend="openslide") as reference:
        expected = _region(reference)
    with open_slide(folder) as reader:
        assert reader.backend == "openslide"
        assert reader.dimensions == (2220, 2967) and reader.level_count == 12
        assert reader.mpp == pytest.approx(0.499)
        got = _region(reader)
    # JFIF frames declared RGB: without the YCbCr conversion the difference is ~50 per channel.
    assert np.abs(got - expected).mean() < 12


def test_nonconformant_dicom_is_a_clear_slide_error() -> None:
    path = shared_file(DICOM_NONCONFORMANT)
    with pytest.raises(SlideError, match="openslide"):
        open_slide(path)


@pytest.mark.parametrize("fraction", [0.3, 0.95])
def test_truncated_real_svs_is_a_slide_error(tmp_path: Path, fraction: float) -> None:
    data = shared_file(CMU_SVS).read_bytes()
    truncated = tmp_path / "CMU-1-Small-Region.svs"
    truncated.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(SlideError, match="truncated"):
        open_slide(truncated)


@pytest.mark.parametrize(
    ("crop", "expected"),
    [("351899/351899_tumour_regions/351899_0.jpg", 113), ("351899/351899_tumour_regions/351899_1.jpg", 84),
     ("351899/351899_tumour_regions/351899_2.jpg", 18), ("389510/389510_tumour_regions/389510_0.jpg", 51),
     ("389510/389510_tumour_regions/389510_1.jpg", 6), ("389510/389510_tumour_regions/389510_2.jpg", 13)],
)
def test_balnmp_sample_crops_reproduce_the_published_patch_counts(crop: str, expected: int) -> None:
    """The official cut_patches rule (256 px, white ratio < 0.3) on the published crops (balnmp.md section 9)."""
    path = shared_file(f"{SAMPLES}/{crop}")
    with open_slide(path) as reader:
        assert reader.backend == "pil" and reader.mpp is None
        width, height = reader.dimensions
        whole = Region(0, "crop", np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64))
        pid = path.stem.split("_")[0]
        candidates = region_candidates(
            [whole], slide_id=pid, patch_px=256, patch_level0_px=256, read_level=0, read_px=256
        )
        patches = reader.read_regions([tuple(xy) for xy in candidates.level0_xy], 0, (256, 256))
    assert len(candidates) == -(-width // 256) * -(-height // 256)
    assert all(key.startswith(f"patches/{pid}/{pid}_0_") for key in candidates.patch_key)
    assert int(passes_white_filter(patches, white_ratio_max=0.3).sum()) == expected


def test_magnification_of_the_scan_reads_natively():
    from balnmp_cache.slides import open_slide, plan_resolution

    svs = shared_file("wsi/aperio_svs/CMU-1-Small-Region.svs")
    with open_slide(svs) as reader:
        plan = plan_resolution(reader, patch_px=256, magnification=20)  # the scan is 20x at 0.499 um/px
    assert (plan.patch_level0_px, plan.read_px, plan.downsample) == (256, 256, 1.0)
