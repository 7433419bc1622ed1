"""The nucleus stage end to end on tiny synthetic slides: tables, resume, shards, failures, bags."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from balnmp_cache.cache import load_cache
from balnmp_cache.nuclei import NucleiConfig, run_nuclei
from balnmp_cache.nuclei.stage import job_weight
from balnmp_cache.nuclei.stats import FEATURES
from balnmp_cache.nuclei.tables import read_table
from balnmp_cache.slides import SlideJob


def _config(root, **overrides) -> NucleiConfig:
    values = dict(sources=[root / "slides"], out=root / "out", slide_mpp=0.5, cohort=root / "cohort.csv",
                  n_bins=4, batch_size=8, min_tissue=0.5)  # fmt: skip
    return NucleiConfig(**{**values, **overrides})


def test_tables_hold_one_row_per_nucleus_in_microns(cohort_dir):
    result = run_nuclei(_config(cohort_dir, bags=False))
    assert (result.n_ok, result.n_failed, result.exit_code) == (6, 0, 0)
    table = read_table(result.tables_dir / "p1.nuclei.parquet")
    frame = pd.read_parquet(result.tables_dir / "p1.nuclei.parquet")  # plain pandas reads it
    assert len(frame) == table.attrs["n_nuclei"] > 100
    for column in ("x", "y", "patch", "patch_key", "area_um2", "major_axis_um", "minor_axis_um", "orientation_deg",
                   "circumference_um", "perimeter_um", "density_per_mm2", "circularity", "rectangularity",
                   "eccentricity", "solidity", "mean_hematoxylin_od", "border"):  # fmt: skip
        assert column in frame, column
    assert table.attrs["units"] == "um" and table.attrs["mpp"] == 0.5
    assert len(table.patches) == table.attrs["n_patches"] == 4  # a 512-px image: four 256-px patches
    inner = frame[~frame["border"]]
    # drawn nuclei of semi-axes 7-9.8 x 4.9-7 px at 0.5 µm/px: about 27-54 µm²
    assert 20 < inner["area_um2"].median() < 60
    assert frame["x"].between(0, 512).all() and frame["y"].between(0, 512).all()
    # the centroid is inside its patch, whose top-left the patch list gives
    corner = table.patches.loc[frame["patch"], ["x", "y"]].to_numpy()
    assert ((frame[["x", "y"]].to_numpy() - corner >= -0.5) & (frame[["x", "y"]].to_numpy() - corner < 256)).all()
    density = table.patches["n_nuclei"] / table.patches["tissue_um2"] * 1e6
    assert np.allclose(table.patches["density_per_mm2"], density)


def test_rerun_skips_complete_slides_and_force_redoes_them(cohort_dir):
    first = run_nuclei(_config(cohort_dir, bags=False))
    path = first.tables_dir / "p0.nuclei.parquet"
    stamp = path.stat().st_mtime_ns
    again = run_nuclei(_config(cohort_dir, bags=False))
    assert (again.n_ok, again.n_skipped) == (0, 6) and path.stat().st_mtime_ns == stamp
    forced = run_nuclei(_config(cohort_dir, bags=False, force=True))
    assert forced.n_ok == 6
    assert pd.read_parquet(path).equals(pd.read_parquet(path))  # readable after the replacement
    other = run_nuclei(_config(cohort_dir, bags=False, otsu_scale=1.5))
    assert other.tables_dir != first.tables_dir and other.n_ok == 6  # other settings, other key


def test_shards_split_the_slides_and_the_last_one_builds_the_bags(cohort_dir):
    one = run_nuclei(_config(cohort_dir, shard="0/2"))
    assert one.bags_dir is None and any("bags not built" in n for n in one.notes)
    two = run_nuclei(_config(cohort_dir, shard="1/2"))
    done = {r.slide_id for r in one.rows} | {r.slide_id for r in two.rows}
    assert done == {f"p{i}" for i in range(6)} and not {r.slide_id for r in one.rows} & {r.slide_id for r in two.rows}
    assert two.bags_dir is not None
    cache = load_cache(two.bags_dir)
    assert cache.features.shape == (6 * len(FEATURES), 4)
    assert cache.patch_key[: len(FEATURES)].tolist() == list(FEATURES)
    rows = cache.slide_rows("p0")
    assert np.allclose(cache.features[rows].astype(np.float64).sum(axis=1), 1.0)  # each histogram sums to 1


def test_bin_edges_come_from_the_train_split_only(cohort_dir):
    result = run_nuclei(_config(cohort_dir))
    import json

    params = json.loads((result.bags_dir / "cache.json").read_text())
    assert "train split" in params["edges_from"]
    # the test slide (p4) redrawn with huge nuclei: the bags' key and edges stay, its own bag changes
    from .conftest import draw_slide

    before = load_cache(result.bags_dir).features.copy()
    draw_slide(cohort_dir / "slides" / "p4.png", seed=99, radius=11.0, spacing=26)
    again = run_nuclei(_config(cohort_dir))
    assert again.bags_dir == result.bags_dir
    after = load_cache(again.bags_dir)
    rows = after.slide_rows("p4")
    assert not np.allclose(before[rows], after.features[rows])
    others = np.ones(len(after.features), dtype=bool)
    others[rows] = False
    assert np.array_equal(before[others], after.features[others])
    summary = pd.read_csv(result.out / "summaries.csv", dtype={"patient_id": str})
    assert list(summary["slide_id"]) == [f"p{i}" for i in range(6)]
    n0, pos = summary[summary.patient_id.isin(["p0", "p2"])], summary[summary.patient_id.isin(["p1", "p3", "p5"])]
    assert pos["area"].min() > n0["area"].max()  # the drawn difference is measured


def test_an_unreadable_slide_fails_alone(cohort_dir):
    (cohort_dir / "slides" / "broken.png").write_bytes(b"not a png")
    result = run_nuclei(_config(cohort_dir, bags=False))
    assert (result.n_ok, result.n_failed, result.exit_code) == (6, 1, 1)
    row = next(r for r in result.rows if r.slide_id == "broken")
    assert row.status == "failed" and row.reason and "\n" not in row.reason
    manifest = pd.read_csv(result.tables_dir / "manifest.csv")
    assert set(manifest["status"]) == {"ok", "failed"}


def test_a_slide_held_by_another_process_is_left_to_it(cohort_dir):
    config = _config(cohort_dir, bags=False)
    from balnmp_cache.nuclei.segmenters import create_segmenter
    from balnmp_cache.nuclei.stage import reading_config, table_params
    from balnmp_cache.nuclei.tables import TableDir

    tables = TableDir.create(cohort_dir / "out" / "tables", table_params(config, create_segmenter(config),
                             reading_config(config)), segmenter="classical")  # fmt: skip
    lock = tables.lock("p3")
    try:
        result = run_nuclei(config)
    finally:
        lock.release()
    assert (result.n_ok, result.n_busy) == (5, 1)
    assert not tables.path("p3").exists()


def test_without_mpp_features_are_in_pixels(cohort_dir):
    result = run_nuclei(_config(cohort_dir, slide_mpp=None, bags=False, sources=[cohort_dir / "slides" / "p0.png"]))
    frame = pd.read_parquet(result.tables_dir / "p0.nuclei.parquet")
    assert "area_px2" in frame and "density_per_mpx" in frame and "area_um2" not in frame
    assert read_table(result.tables_dir / "p0.nuclei.parquet").attrs["fallback_mpp"] == 0.5


@pytest.mark.parametrize("shard", ["2/2", "-1/2", "x"])
def test_bad_shard_is_a_config_error(shard):
    with pytest.raises(ValueError, match="I/N"):
        NucleiConfig(shard=shard)


def test_job_weight_is_the_patch_count_or_the_file_size(tmp_path):
    path = tmp_path / "s.jpg"
    path.write_bytes(b"x" * 1234)
    assert job_weight(SlideJob("s", "s", path, "slide", None, None, ())) == 1234
    assert job_weight(SlideJob("p", "p", tmp_path, "patches", None, None, (path, path, path))) == 3
    assert job_weight(SlideJob("g", "g", tmp_path / "gone.svs", "slide", None, None, ())) == 0


def test_recovery_removes_dead_temporaries_and_restores_lost_rows(cohort_dir):
    result = run_nuclei(_config(cohort_dir, bags=False))
    tables = result.tables_dir
    stale = tables / ".p0.nuclei.parquet.999999.0123abcd.tmp"
    stale.write_bytes(b"half a table")
    manifest = pd.read_csv(tables / "manifest.csv")
    manifest[manifest["slide_id"] != "p2"].to_csv(tables / "manifest.csv", index=False)
    again = run_nuclei(_config(cohort_dir, bags=False))
    assert not stale.exists()
    assert again.n_skipped == 6
    assert "p2" in set(pd.read_csv(tables / "manifest.csv")["slide_id"])
