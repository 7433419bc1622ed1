"""The HTML report as a browser shows it: rendered headless to a PNG and to its DOM (skipped without Chromium)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from balnmp_cache.report import ReportConfig, run_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars")
pytestmark = pytest.mark.slow


def _browser() -> str:
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    return browser


def test_report_html_renders_tables_and_figures(make_binary_run, tmp_path):
    browser = _browser()
    runs = [make_binary_run("image", seed=1), make_binary_run("image_clinical", seed=2, strength=2.0)]
    out = tmp_path / "report"
    run_report(ReportConfig(paths=runs, out=out, bootstrap=200))
    png = tmp_path / "report.png"
    subprocess.run([browser, *FLAGS, "--window-size=1300,9000", f"--screenshot={png}", (out / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    ink = (pixels < 200).any(axis=2)
    assert ink.mean() > 0.01  # text and table rules, not a blank page
    coloured = np.ptp(pixels, axis=2) > 60
    assert coloured.sum() > 20_000  # curves, bands, calibration, confusion matrices are drawn

    dom = subprocess.run([browser, *FLAGS, "--dump-dom", (out / "report.html").as_uri()],
                         check=True, capture_output=True, timeout=120, text=True).stdout
    sections = ["Summary", "ROC curves", "Precision-recall curves", "Calibration", "Training behaviour",
                "Binary metrics", "Comparisons (paired DeLong test)", "Per-patient predictions", "Provenance"]
    positions = [dom.index(f">{title}</h2>") for title in sections]
    assert positions == sorted(positions)  # summary first, provenance last
    assert 'title="Sort by this column"' in dom  # the sorting script ran in the browser without an error
