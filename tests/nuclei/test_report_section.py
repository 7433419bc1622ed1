"""The report's nucleus section: statistics table, figures and the attention ranking of a nucleus run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from balnmp_cache.errors import ReportInputError
from balnmp_cache.nuclei.stats import FEATURES
from balnmp_cache.report import run_report
from balnmp_cache.report.config import ReportConfig

from ..report.conftest import run_json, synthetic_labels, write_predictions


def _inputs(tmp_path):
    labels = synthetic_labels(0)
    ids = labels["patient_id"].astype(str).tolist()
    rng = np.random.default_rng(0)
    status = np.where(labels["label"].to_numpy() == 1, np.where(rng.random(len(ids)) < 0.5, "N+(1-2)", "N+(>2)"), "N0")
    summary = pd.DataFrame({"slide_id": ids, "patient_id": ids, "units": "um"})
    for k, feature in enumerate(FEATURES):
        summary[feature] = rng.normal(10, 1, len(ids)) + (status != "N0") * (k % 3)
    nuclei = tmp_path / "nuclei"
    nuclei.mkdir()
    summary.to_csv(nuclei / "summaries.csv", index=False)
    cohort = pd.DataFrame({"aln_status": status}, index=pd.Index(ids, name="patient_id"))
    p1 = np.clip(labels["label"].to_numpy() * 0.6 + rng.random(len(ids)) * 0.4, 0, 1)
    info = run_json(0)
    info["cache"]["encoder"] = "nuclei"
    run = write_predictions(tmp_path / "runs" / "nuc", labels, np.column_stack([1 - p1, p1]), run_json=info)
    rows = [{"patient_id": pid, "split": split, "bag": 0, "patch_key": f, "x": 0, "y": 0,
             "attention": (0.3 if f == "density" else 0.1) if s != "N0" else 1 / len(FEATURES)}
            for pid, split, s in zip(ids, labels["split"], status, strict=True) for f in FEATURES]  # fmt: skip
    pd.DataFrame(rows).to_csv(run / "attention.csv", index=False)
    return run, nuclei, cohort


def test_report_gets_the_nucleus_section_with_tables_and_figures(tmp_path):
    run, nuclei, cohort = _inputs(tmp_path)
    config = ReportConfig(paths=[run], out=tmp_path / "report", nuclei=nuclei, figure_formats=["png"])
    result = run_report(config, cohort=cohort)
    for name in ("nuclei_stats.csv", "nuclei_features.png", "nuclei_attention.png", "nuclei_attention.csv",
                 "nuclei_attention_per_patient.csv"):  # fmt: skip
        assert name in result.files and result.files[name].is_file(), name
    stats = pd.read_csv(result.files["nuclei_stats.csv"])
    assert stats["feature"].tolist() == list(FEATURES)
    assert {"p", "p_holm", "p_bh", "rank_biserial", "p_kw"} <= set(stats.columns)
    attention = pd.read_csv(result.files["nuclei_attention.csv"])
    assert attention["feature"].iloc[0] == "density"  # the ranking follows the attention
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    assert "Nucleus morphometry" in markdown and "nuclei_features.png" in markdown
    assert "The 3-class task, N0" in markdown and "p (Kruskal–Wallis)" in markdown
    assert "Nucleus morphometry" in (tmp_path / "report" / "report.html").read_text(encoding="utf-8")


def test_without_summaries_the_error_names_the_fix(tmp_path):
    run, _, cohort = _inputs(tmp_path)
    config = ReportConfig(paths=[run], out=tmp_path / "report", nuclei=tmp_path / "nowhere", figure_formats=["png"])
    with pytest.raises(ReportInputError, match="balnmp-cache nuclei"):
        run_report(config, cohort=cohort)


@pytest.mark.slow
def test_the_nucleus_section_renders_in_a_browser(tmp_path):
    """Headless Chromium draws the section: its tables, the violin plots and the attention bars (coloured)."""
    import shutil
    import subprocess

    from PIL import Image

    browsers = ("chromium", "chromium-browser", "google-chrome")
    browser = next((shutil.which(b) for b in browsers if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    run, nuclei, cohort = _inputs(tmp_path)
    out = tmp_path / "report"
    run_report(ReportConfig(paths=[run], out=out, nuclei=nuclei, figure_formats=["png"]), cohort=cohort)
    html = out / "report.html"
    section = html.read_text(encoding="utf-8").split("Nucleus morphometry", 1)[1]
    only = tmp_path / "section.html"  # the section alone, so that the screenshot shows it
    only.write_text(f"<html><body><h2>Nucleus morphometry{section}", encoding="utf-8")
    png = tmp_path / "section.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars", "--window-size=1300,3000",
         f"--screenshot={png}", only.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert (pixels < 200).any(axis=2).mean() > 0.01  # text and table rules, not a blank page
    assert (np.ptp(pixels, axis=2) > 60).sum() > 20_000  # violins and bars are drawn in colour
