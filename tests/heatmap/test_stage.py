"""``run_heatmap`` on runs trained on a synthetic study: every cached patch scored, outputs, resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from balnmp_cache.cache import CacheDir, read_slide
from balnmp_cache.errors import CacheError, ConfigError
from balnmp_cache.heatmap import HeatmapConfig, read_index, run_heatmap
from balnmp_cache.heatmap.scoring import attention_stats, average_ranks, percentiles
from balnmp_cache.train.predict import load_run
from tests.support.synthetic import make_study

from .conftest import SLIDES, heatmap_config


def _config(run_dir, out, **overrides) -> HeatmapConfig:
    return heatmap_config(run_dir, out, **{"slides": SLIDES, **overrides})


def test_every_cached_patch_gets_its_attention_score_and_single_patch_log_odds(drawn, runs, study):
    _, head = load_run(runs["balnmp"])
    cache = CacheDir.open(study.cache_dir)
    assert [r.status for r in drawn.rows] == ["ok"] * len(SLIDES) and drawn.exit_code == 0
    for sid in SLIDES:
        sf = read_slide(cache.slide_files()[sid])
        table = pd.read_csv(drawn.out / "slides" / sid / "scores.csv")
        assert list(table["patch_key"]) == list(sf.patch_key)  # every cached patch, in the cache's order
        np.testing.assert_array_equal(table[["x", "y"]].to_numpy(), sf.coords)
        x = torch.from_numpy(sf.features.astype(np.float32))
        with torch.inference_mode():
            logits, scores = head.patch_scores(x)
            _, whole = head(x[None])  # the slide as one bag
        np.testing.assert_allclose(table["attention_logit"], scores.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(table["attention"], whole[0].numpy(), rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(table["contribution"], (logits[:, 1] - logits[:, 0]).numpy(), rtol=1e-4, atol=1e-5)
        assert table["score"].equals(table["attention_logit"])
        assert table.loc[table["rank"] == 1, "score"].item() == table["score"].max()
        assert table["percentile"].max() == 100.0 and sorted(table["rank"]) == list(range(1, len(table) + 1))


def test_each_slide_has_its_maps_galleries_geojson_and_summary(drawn):
    index = read_index(drawn.out)
    assert index["score"] == "attention" and index["head"] == "balnmp" and index["cohort_view"] == "cohort.png"
    for slide in index["slides"]:
        files = slide["files"]
        assert {"attention", "attention_rgba", "contribution", "contribution_rgba", "top", "bottom", "scores",
                "geojson", "summary"} <= set(files)
        assert all((drawn.out / path).is_file() for path in files.values())
        assert not (drawn.out / "slides" / slide["slide_id"] / "crops").exists()  # the study has no slide images
        features = json.loads((drawn.out / files["geojson"]).read_text())["features"]
        assert len(features) == slide["n_patches"]
    assert (drawn.out / "cohort.png").is_file() and (drawn.out / "slides.csv").is_file()


def test_gallery_crops_are_read_from_the_slide_at_the_cached_coordinates(runs, study, checker_slide, tmp_path):
    """A slide file behind the cache: each crop shows its patch's square of the checkerboard."""
    from balnmp_cache.cache import SlideFeatures, write_slide

    from .conftest import DARK, LIGHT

    template = read_slide(CacheDir.open(study.cache_dir).slide_files()["1"])
    coords, odd = checker_slide["coords"], checker_slide["parity"]
    features = np.random.default_rng(0).standard_normal((len(coords), template.features.shape[1])).astype(np.float32)
    attrs = {**template.attrs, "source_path": str(checker_slide["png"]), "slide_width": checker_slide["width"],
             "slide_height": checker_slide["height"], "patch_level0_px": checker_slide["patch_px"],
             "coords_frame": "level0", "patient_id": "1"}
    keys = np.array([f"c_{x}_{y}" for x, y in coords.tolist()], dtype=object)
    write_slide(tmp_path / "cache", SlideFeatures("c1", features, coords, checker_slide["region_id"], keys, attrs))
    result = run_heatmap(_config(runs["balnmp"], tmp_path / "out", cache=tmp_path / "cache", slides=[], top_k=4,
                                 gallery_px=32))
    assert [r.status for r in result.rows] == ["ok"]
    table = pd.read_csv(result.out / "slides" / "c1" / "scores.csv")
    side, checked = checker_slide["patch_px"], 0
    for i, (x, y) in enumerate(table.sort_values("rank").head(4)[["x", "y"]].to_numpy().tolist()):
        if x + side > checker_slide["width"] or y + side > checker_slide["height"]:
            continue  # a partial patch is white past the slide's edge
        crop = np.asarray(Image.open(result.out / "slides" / "c1" / "crops" / f"top-{i + 1:02d}.jpg"))
        patch = int(np.flatnonzero((coords[:, 0] == x) & (coords[:, 1] == y))[0])
        centre = crop[4:28, 4:28].reshape(-1, 3).mean(axis=0)
        assert np.abs(centre - (DARK if odd[patch] else LIGHT)).max() < 12
        checked += 1
    assert checked


def test_a_second_call_skips_every_slide_and_a_changed_setting_redraws(drawn, runs):
    again = run_heatmap(_config(runs["balnmp"], drawn.out))
    assert [r.status for r in again.rows] == ["skipped"] * len(SLIDES)
    changed = run_heatmap(_config(runs["balnmp"], drawn.out, alpha=0.3))
    assert [r.status for r in changed.rows] == ["ok"] * len(SLIDES)
    (drawn.out / "slides" / "2" / "top.png").unlink()  # a missing output redraws its slide
    assert [r.status for r in run_heatmap(_config(runs["balnmp"], drawn.out, alpha=0.3)).rows] == [
        "skipped", "ok", "skipped", "skipped"]


def test_a_clinical_run_scores_with_each_patients_clinical_vector(runs, study, tmp_path):
    from balnmp_cache.train.predict import clinical_vectors

    ckpt, head = load_run(runs["gated_clinical"])
    result = run_heatmap(_config(runs["gated_clinical"], tmp_path / "g", slides=["5"], cohort=study.cohort_csv))
    sf = read_slide(CacheDir.open(study.cache_dir).slide_files()["5"])
    (clinical,) = clinical_vectors(ckpt, study.cohort_csv, ["5"])
    with torch.inference_mode():
        logits, _ = head.patch_scores(torch.from_numpy(sf.features.astype(np.float32)), torch.from_numpy(clinical))
    table = pd.read_csv(result.out / "slides" / "5" / "scores.csv")
    np.testing.assert_allclose(table["contribution"], (logits[:, 1] - logits[:, 0]).numpy(), rtol=1e-4, atol=1e-5)
    assert "clinical vector" in read_index(result.out)["definitions"]["contribution"]


def test_a_clinical_only_run_draws_nothing_and_says_why(runs, tmp_path):
    result = run_heatmap(_config(runs["clinical_only"], tmp_path / "c"))
    assert result.rows == [] and "reads no patch features" in result.message
    assert read_index(result.out)["message"] == result.message


def test_a_cache_of_another_encoder_is_refused_in_one_line(runs, tmp_path):
    other = make_study(tmp_path / "other", n_patients=3, dim=4, n_patches=[10, 10, 10])
    with pytest.raises(CacheError, match=r"4-d features.*trained on 8-d.*--cache") as info:
        run_heatmap(_config(runs["balnmp"], tmp_path / "x", cache=other.cache_dir, slides=[]))
    assert "\n" not in str(info.value)


def test_a_missing_or_unfinished_run_is_refused(tmp_path):
    from balnmp_cache.config import load_config

    with pytest.raises(ConfigError, match="no run directory: pass RUN_DIR"):
        load_config(HeatmapConfig, None, {"out": tmp_path / "o"})
    with pytest.raises(ConfigError, match="not a finished run"):
        run_heatmap(HeatmapConfig(run_dir=tmp_path, out=tmp_path / "o"))


def test_unknown_slide_ids_are_named(runs, tmp_path):
    with pytest.raises(ConfigError, match="slide\\(s\\) nope are not in the cache"):
        run_heatmap(_config(runs["balnmp"], tmp_path / "o", slides=["nope"]))


def test_near_uniform_attention_is_called_flat_and_peaked_attention_is_not(drawn):
    from balnmp_cache.heatmap.scoring import SlideScores

    def stats(logits: np.ndarray) -> dict:
        weights = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        n = len(logits)
        scores = SlideScores("s", "p", {}, np.zeros((n, 2)), np.zeros(n), np.array([""] * n), logits.astype(np.float32),
                             weights.astype(np.float32), np.zeros(n, np.float32), "attention")
        return attention_stats(scores, flat_ratio=1.5)

    # the official head's 1-unit bottleneck: bag maxima of 0.104 against a uniform 0.100
    flat = stats(np.linspace(-0.02, 0.02, 100))
    assert flat["flat"] and flat["normalised_entropy"] > 0.999 and flat["weight_ratio_p95_p5"] < 1.05
    peaked = stats(np.r_[np.zeros(90), np.full(10, 3.0)])
    assert not peaked["flat"] and peaked["weight_ratio_p95_p5"] > 10 and peaked["normalised_entropy"] < 0.9


def test_average_ranks_share_ties_and_percentiles_end_at_100():
    np.testing.assert_array_equal(average_ranks(np.array([3.0, 1.0, 3.0, 2.0])), [3.5, 1.0, 3.5, 2.0])
    np.testing.assert_array_equal(percentiles(np.array([5.0, 1.0, 3.0, 7.0])), [75.0, 25.0, 50.0, 100.0])
