"""Stage 1 end to end on the demo cohort: JPEG and pyramidal forms, resume, keys, formats, failures."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from balnmp_cache.cache import load_cache, read_manifest, read_slide, verify_cache
from balnmp_cache.errors import SlideError
from balnmp_cache.extract import run_extract
from tests.extract.conftest import config

KEY_RE = r"patches/(\d+)/\1_\d+_\d+_\d+\.jpg"


def _slides(cache_dir: Path) -> dict[str, object]:
    return {p.stem: read_slide(p) for p in sorted(cache_dir.glob("*.h5"))}


def test_bcnb_jpeg_root_is_cached_with_full_provenance(small_cohort, tmp_path):
    result = run_extract(config([small_cohort], tmp_path / "cache"))
    assert (result.n_ok, result.n_failed, result.n_empty, result.exit_code) == (2, 0, 0, 0)
    cache_dir = result.cache_dir
    assert cache_dir.parent == tmp_path / "cache" and cache_dir.name.startswith("efficientnet_lite0-avg-")
    key = cache_dir.name.rsplit("-", 1)[1]
    assert {"config.toml", "cache.json", "manifest.csv"} <= {p.name for p in cache_dir.iterdir()}
    slides = _slides(cache_dir)
    assert set(slides) == {"1", "2"}
    for sid, sf in slides.items():
        n = sf.n_patches
        assert n > 0 and sf.features.shape == (n, 1280) and sf.features.dtype == np.float16
        assert sf.coords.shape == (n, 2) and sf.coords.dtype == np.int64
        assert sf.region_id.shape == (n,) and sf.patch_key.shape == (n,)
        assert all(__import__("re").fullmatch(KEY_RE, k) for k in sf.patch_key)
        assert np.isfinite(sf.features.astype(np.float32)).all()
        a = sf.attrs
        assert a["complete"] and a["cache_key"] == key and a["n_patches"] == n
        assert a["encoder"] == "efficientnet_lite0" and a["mode"] == "avg" and a["feature_dim"] == 1280
        assert a["weights"] == "imagenet" and not a["random_weights"] and len(a["weights_sha256"]) == 64
        assert a["input_px"] == 224 and a["patch_px"] == 256 and a["level"] == 0 and a["downsample"] == 1.0
        assert a["mpp_source"] == "none" and math.isnan(a["mpp"])  # BCNB JPEGs carry no MPP
        assert a["reader"] == "pil" and a["slide_width"] > 0 and a["patient_id"] == sid
        assert a["norm_mean"] == pytest.approx([0.485, 0.456, 0.406])
        assert "package_version" in a and "created_utc" in a
    rows = {r.slide_id: r for r in read_manifest(cache_dir)}
    assert {r.status for r in rows.values()} == {"ok"}
    assert rows["1"].n_patches == slides["1"].n_patches
    assert verify_cache(cache_dir) == []


def test_out_of_border_polygon_is_clipped_and_noted(small_cohort, tmp_path):
    # patient 1 of the demo has a polygon running past the image border (as BCNB slide 732 does)
    result = run_extract(config([small_cohort / "WSIs" / "1.jpg"], tmp_path / "cache"))
    assert result.n_ok == 1
    row = read_manifest(result.cache_dir)[0]
    assert "outside" in row.reason and "clipped" in row.reason


def test_pyramidal_form_gives_the_same_patches(small_cohort, tmp_path):
    jpeg = run_extract(config([small_cohort], tmp_path / "a"))
    tiff = run_extract(config([small_cohort], tmp_path / "b", prefer="pyramidal"))
    a, b = _slides(jpeg.cache_dir), _slides(tiff.cache_dir)
    for sid in a:
        assert list(a[sid].patch_key) == list(b[sid].patch_key)
        np.testing.assert_array_equal(a[sid].coords, b[sid].coords)
        assert b[sid].attrs["mpp"] == pytest.approx(0.5) and b[sid].attrs["mpp_source"] == "metadata"
        assert b[sid].attrs["reader"] in {"cucim", "openslide", "tiffslide"}
        fa, fb = a[sid].features.astype(np.float32), b[sid].features.astype(np.float32)
        cosine = (fa * fb).sum(1) / np.linalg.norm(fa, axis=1) / np.linalg.norm(fb, axis=1)
        assert cosine.min() > 0.95  # the same pixels up to one more JPEG re-encoding


def test_rerun_skips_complete_slides_and_force_redoes_them(small_cohort, tmp_path):
    first = run_extract(config([small_cohort], tmp_path / "cache"))
    stamps = {p.name: p.stat().st_mtime_ns for p in first.cache_dir.glob("*.h5")}
    again = run_extract(config([small_cohort], tmp_path / "cache"))
    assert (again.n_ok, again.n_skipped, again.n_patches) == (0, 2, 0)
    assert again.cache_dir == first.cache_dir
    assert stamps == {p.name: p.stat().st_mtime_ns for p in first.cache_dir.glob("*.h5")}
    forced = run_extract(config([small_cohort], tmp_path / "cache", force=True))
    assert forced.n_ok == 2 and forced.n_skipped == 0


def test_settings_that_change_bytes_change_the_cache_key(small_cohort, tmp_path):
    base = run_extract(config([small_cohort / "WSIs" / "2.jpg"], tmp_path / "cache"))
    other = run_extract(config([small_cohort / "WSIs" / "2.jpg"], tmp_path / "cache", white_ratio_max=0.5))
    assert base.cache_dir != other.cache_dir
    assert json.loads((other.cache_dir / "cache.json").read_text())["white_ratio_max"] == 0.5
    # a loose threshold keeps at least as many patches
    assert read_slide(other.cache_dir / "2.h5").n_patches >= read_slide(base.cache_dir / "2.h5").n_patches


def test_zarr_store_holds_the_same_features(small_cohort, tmp_path):
    h5 = run_extract(config([small_cohort], tmp_path / "cache"))
    zr = run_extract(config([small_cohort], tmp_path / "cache", format="zarr"))
    assert sorted(p.name for p in zr.cache_dir.glob("*.zarr")) == ["1.zarr", "2.zarr"]
    a, b = load_cache(h5.cache_dir), load_cache(zr.cache_dir)
    np.testing.assert_array_equal(a.features, b.features)
    assert list(a.patch_key) == list(b.patch_key)
    assert verify_cache(zr.cache_dir) == []


def _truncate(src: Path, dst: Path, fraction: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def test_bad_slides_fail_alone_with_a_reason(small_cohort, tmp_path):
    wsis, pyr = small_cohort / "WSIs", small_cohort / "WSIs-pyramidal"
    bad = tmp_path / "bad"
    bad.mkdir()
    _truncate(pyr / "2.tiff", bad / "truncated.tiff")
    (bad / "notaslide.svs").write_text("this is not a slide")
    outside = bad / "outside.jpg"
    shutil.copy(wsis / "2.jpg", outside)
    corners = [[-900, -900], [-500, -900], [-500, -500]]
    (bad / "outside.json").write_text(json.dumps({"positive": [{"name": "A", "vertices": corners}], "negative": []}))
    tiny = bad / "tiny.jpg"
    shutil.copy(wsis / "2.jpg", tiny)
    corners = [[10, 10], [40, 10], [40, 40]]
    (bad / "tiny.json").write_text(json.dumps({"positive": [{"name": "A", "vertices": corners}], "negative": []}))
    manifest = tmp_path / "slides.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["slide_path", "patient_id", "annotation_path", "mpp"])
        writer.writerow([str(pyr / "1.tiff"), "p1", str(pyr / "1.json"), ""])
        writer.writerow([str(bad / "truncated.tiff"), "p2", "", ""])
        writer.writerow([str(bad / "notaslide.svs"), "p3", "", ""])
        writer.writerow([str(outside), "p4", str(bad / "outside.json"), ""])
        writer.writerow([str(tiny), "p5", str(bad / "tiny.json"), ""])
    result = run_extract(config([manifest], tmp_path / "cache"))
    rows = {r.slide_id: r for r in read_manifest(result.cache_dir)}
    assert rows["1"].status == "ok" and rows["1"].patient_id == "p1"
    assert rows["truncated"].status == "failed" and rows["truncated"].reason
    assert rows["notaslide"].status == "failed" and rows["notaslide"].reason
    assert rows["outside"].status == "failed" and "outside" in rows["outside"].reason
    assert rows["tiny"].status == "empty" and ("0 of" in rows["tiny"].reason or "no candidate" in rows["tiny"].reason)
    assert all("\n" not in r.reason for r in rows.values())
    assert result.exit_code == 1 and (result.n_ok, result.n_failed, result.n_empty) == (1, 3, 1)
    assert sorted(p.name for p in result.cache_dir.glob("*.h5")) == ["1.h5"]
    assert verify_cache(result.cache_dir) == []


def test_target_mpp_without_metadata_fails_unless_slide_mpp_given(small_cohort, tmp_path):
    jpeg = small_cohort / "WSIs" / "2.jpg"
    failed = run_extract(config([jpeg], tmp_path / "a", target_mpp=1.0))
    row = read_manifest(failed.cache_dir)[0]
    assert row.status == "failed" and "--slide-mpp" in row.reason
    ok = run_extract(config([jpeg], tmp_path / "b", target_mpp=1.0, slide_mpp=0.5))
    sf = read_slide(ok.cache_dir / "2.h5")
    assert sf.attrs["mpp"] == pytest.approx(1.0) and sf.attrs["mpp_source"] == "override"
    assert sf.attrs["patch_level0_px"] == 512


def test_no_skip_errors_stops_at_the_first_failure(small_cohort, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.svs").write_text("garbage")
    with pytest.raises(SlideError, match="--no-skip-errors"):
        run_extract(config([bad], tmp_path / "cache", skip_errors=False))
    cache_dir = next((tmp_path / "cache").iterdir())
    assert read_manifest(cache_dir)[0].status == "failed"


def test_precut_patches_keep_their_official_keys(small_cohort, tmp_path):
    wsi = run_extract(config([small_cohort / "WSIs" / "1.jpg"], tmp_path / "a"))
    sf = read_slide(wsi.cache_dir / "1.h5")
    # write the kept patches the way the official cut_patches.py names them, beside WSIs/
    image = np.asarray(Image.open(small_cohort / "WSIs" / "1.jpg").convert("RGB"))
    for key, (x, y) in zip(sf.patch_key[:12], sf.coords[:12], strict=True):
        target = small_cohort / key
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[y : y + 256, x : x + 256]).save(target, quality=100)
    result = run_extract(config([small_cohort / "patches"], tmp_path / "b"))
    assert result.n_ok == 1
    pre = read_slide(result.cache_dir / "1.h5")
    assert sorted(pre.patch_key) == sorted(sf.patch_key[:12])
    by_key = dict(zip(sf.patch_key, map(tuple, sf.coords), strict=True))
    assert all(by_key[k] == tuple(xy) for k, xy in zip(pre.patch_key, pre.coords, strict=True))
    assert pre.attrs["coords_frame"] == "level0"


def test_precision_is_recorded_and_part_of_the_key(small_cohort, tmp_path):
    slide = small_cohort / "WSIs" / "2.jpg"
    auto = run_extract(config([slide], tmp_path / "cache"))
    fp32 = run_extract(config([slide], tmp_path / "cache", precision="fp32"))
    a, b = read_slide(auto.cache_dir / "2.h5"), read_slide(fp32.cache_dir / "2.h5")
    assert b.attrs["precision"] == "fp32" and a.attrs["precision"] in {"fp32", "bf16"}
    assert a.attrs["device"] == b.attrs["device"] == "cpu"
    if a.attrs["precision"] == "bf16":
        assert auto.cache_dir != fp32.cache_dir
    fa, fb = a.features.astype(np.float32), b.features.astype(np.float32)
    cosine = (fa * fb).sum(1) / np.linalg.norm(fa, axis=1) / np.linalg.norm(fb, axis=1)
    assert cosine.min() > 0.99


def test_an_edited_source_is_extracted_again_and_another_slide_of_the_same_id_is_refused(
    small_cohort, tmp_path, caplog
):
    slide = small_cohort / "WSIs" / "1.jpg"
    first = run_extract(config([slide], tmp_path / "cache"))
    shutil.copy(small_cohort / "WSIs" / "2.jpg", slide)  # the same path, another image: the source was edited
    (small_cohort / "WSIs" / "1.json").unlink()
    again = run_extract(config([slide], tmp_path / "cache"))
    assert again.cache_dir == first.cache_dir and again.n_skipped == 0 and again.n_ok == 1
    assert "changed since it was extracted; extracting it again" in caplog.text
    sf = read_slide(again.cache_dir / "1.h5")
    assert sf.attrs["source_path"] == str(slide) and (sf.region_id == -1).all()
    assert run_extract(config([slide], tmp_path / "cache")).n_skipped == 1  # unchanged: reused

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(small_cohort / "WSIs" / "2.jpg", other / "1.jpg")
    Image.open(other / "1.jpg").rotate(90, expand=True).save(other / "1.jpg")  # another slide, the same id
    before = ((again.cache_dir / "1.h5").read_bytes(), (again.cache_dir / "manifest.csv").read_bytes())
    refused = run_extract(config([other / "1.jpg"], tmp_path / "cache"))
    assert (refused.n_ok, refused.n_failed, refused.exit_code) == (0, 1, 1)
    (row,) = refused.rows
    assert row.status == "failed"
    assert f"already in the cache from {slide}, a different slide than {other / '1.jpg'}" in row.reason
    assert ((again.cache_dir / "1.h5").read_bytes(), (again.cache_dir / "manifest.csv").read_bytes()) == before


def test_hidden_files_are_ignored_and_unsupported_formats_get_a_row(small_cohort, tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    shutil.copy(small_cohort / "WSIs" / "2.jpg", folder / "2.jpg")
    shutil.copy(small_cohort / "WSIs" / "2.json", folder / "2.json")
    (folder / "._2.jpg").write_bytes(b"AppleDouble")
    (folder / "scan.czi").write_bytes(b"ZISRAWFILE")
    result = run_extract(config([folder], tmp_path / "cache"))
    rows = {r.slide_id: r for r in read_manifest(result.cache_dir)}
    assert set(rows) == {"2", "scan"}
    assert rows["2"].status == "ok"
    assert rows["scan"].status == "failed" and "unsupported" in rows["scan"].reason
