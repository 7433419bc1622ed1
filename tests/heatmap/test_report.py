"""The report's heatmap section: it links every slide's outputs and embeds the cohort view."""

from __future__ import annotations

import re

from balnmp_cache.report import ReportConfig, run_report


def test_the_report_links_each_slides_maps_and_embeds_the_cohort_view(drawn, runs, tmp_path):
    out = tmp_path / "report"
    config = ReportConfig(paths=[runs["balnmp"]], out=out, figure_formats=["png"], heatmaps=drawn.out.parent)
    run_report(config)
    markdown = (out / "report.md").read_text()
    section = markdown[markdown.index("## Heatmaps"):]
    links = re.findall(r"\[(attention|contribution|top|bottom|scores|GeoJSON)\]\(([^)]+)\)", section)
    assert {name for name, _ in links} == {"attention", "contribution", "top", "bottom", "scores", "GeoJSON"}
    assert len(links) == 6 * 4  # every output of the four slides
    assert all((out / href).is_file() for _, href in links)  # relative to the report's folder
    assert "near-uniform" in section and "cohort view" in section
    html = (out / "report.html").read_text()
    hrefs = re.findall(r'<a href="([^"]+)">attention</a>', html)
    assert len(hrefs) == 4 and all((out / href).is_file() for href in hrefs)
    assert html.count("data:image/png") >= 2  # the ROC figure and the cohort view at least


def test_a_report_without_heatmaps_says_how_to_make_them(runs, tmp_path):
    out = tmp_path / "report"
    run_report(ReportConfig(paths=[runs["balnmp"]], out=out, figure_formats=["png"], heatmaps=tmp_path / "none"))
    assert "No heatmaps in" in (out / "report.md").read_text() and "make heatmap" in (out / "report.md").read_text()
