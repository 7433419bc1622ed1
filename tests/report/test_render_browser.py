"""The HTML report as a browser shows it: rendered headless to a PNG (skipped without Chromium)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from balnmp_cache.report import ReportConfig, run_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
pytestmark = pytest.mark.slow


def test_report_html_renders_tables_and_figures(make_binary_run, tmp_path):
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    runs = [make_binary_run("image", seed=1), make_binary_run("image_clinical", seed=2, strength=2.0)]
    out = tmp_path / "report"
    run_report(ReportConfig(paths=runs, out=out))
    png = tmp_path / "report.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars", "--window-size=1300,6000",
         f"--screenshot={png}", (out / "report.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    ink = (pixels < 200).any(axis=2)
    assert ink.mean() > 0.01  # text and table rules, not a blank page
    coloured = (np.ptp(pixels, axis=2) > 60).sum()
    assert coloured > 5_000  # the ROC curves and confusion matrices are drawn (coloured pixels)
