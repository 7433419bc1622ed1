"""Stage 1 on the real third-party slides in ../shared/data/wsi (skipped when the folder is absent)."""

from __future__ import annotations

import math

import pytest

from balnmp_cache.cache import read_manifest, read_slide, verify_cache
from balnmp_cache.extract import run_extract
from tests.conftest import shared_file
from tests.extract.conftest import config

# Large patches keep the number of encoder calls small; tiling and reading are what is under test.
PATCH_PX = 768


def test_aperio_svs_records_mpp_from_metadata(tmp_path):
    svs = shared_file("wsi/aperio_svs/CMU-1-Small-Region.svs")
    result = run_extract(config([svs], tmp_path / "cache", patch_px=PATCH_PX))
    assert result.n_ok == 1
    sf = read_slide(result.cache_dir / "CMU-1-Small-Region.h5")
    assert sf.attrs["mpp"] == pytest.approx(0.499, abs=1e-3)
    assert sf.attrs["mpp_source"] == "metadata"
    assert sf.attrs["magnification"] == pytest.approx(20.0)
    assert (sf.attrs["slide_width"], sf.attrs["slide_height"]) == (2220, 2967)
    assert sf.attrs["roi_source"].startswith("tissue detection")
    assert sf.n_patches > 0 and (sf.region_id == -1).all()


def test_target_mpp_reads_a_coarser_grid_on_the_svs(tmp_path):
    svs = shared_file("wsi/aperio_svs/CMU-1-Small-Region.svs")
    result = run_extract(config([svs], tmp_path / "cache", patch_px=256, target_mpp=2.0))
    sf = read_slide(result.cache_dir / "CMU-1-Small-Region.h5")
    assert sf.attrs["mpp"] == pytest.approx(2.0, rel=0.01)
    assert sf.attrs["patch_level0_px"] == round(256 * 2.0 / 0.499)


def test_jpeg2000_svs_without_mpp_works(tmp_path):
    svs = shared_file("wsi/aperio_svs/tcga-cr-7395-01a-01-ts1.svs")
    result = run_extract(config([svs], tmp_path / "cache", patch_px=1024))
    assert result.n_ok == 1, read_manifest(result.cache_dir)
    sf = read_slide(result.cache_dir / "tcga-cr-7395-01a-01-ts1.h5")
    assert math.isnan(sf.attrs["mpp"]) and sf.attrs["mpp_source"] == "none"


def test_jpeg2000_svs_with_a_target_needs_slide_mpp(tmp_path):
    svs = shared_file("wsi/aperio_svs/tcga-cr-7395-01a-01-ts1.svs")
    result = run_extract(config([svs], tmp_path / "cache", target_mpp=1.0))
    row = read_manifest(result.cache_dir)[0]
    assert row.status == "failed" and "no MPP metadata" in row.reason and "--slide-mpp" in row.reason


def test_ome_tiff_works(tmp_path):
    ome = shared_file("wsi/ome_tiff/OS-1-detail.ome.tif")
    result = run_extract(config([ome], tmp_path / "cache", patch_px=256))
    assert result.n_ok == 1, read_manifest(result.cache_dir)
    assert verify_cache(result.cache_dir) == []


def test_truncated_copy_fails_alone(tmp_path):
    svs = shared_file("wsi/aperio_svs/CMU-1-Small-Region.svs")
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "good.svs").write_bytes(svs.read_bytes())
    data = svs.read_bytes()
    (folder / "truncated.svs").write_bytes(data[: len(data) * 6 // 10])
    result = run_extract(config([folder], tmp_path / "cache", patch_px=PATCH_PX))
    rows = {r.slide_id: r for r in read_manifest(result.cache_dir)}
    assert rows["good"].status == "ok"
    assert rows["truncated"].status == "failed" and rows["truncated"].reason
    assert result.exit_code == 1
    assert verify_cache(result.cache_dir) == []
