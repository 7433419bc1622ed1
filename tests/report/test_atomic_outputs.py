"""Report outputs are written atomically: a write that fails half-way leaves the old file and no debris."""

from __future__ import annotations

import json

import pytest
from matplotlib.artist import Artist
from matplotlib.figure import Figure

from balnmp_cache.report import ReportConfig, run_report
from balnmp_cache.report.figures import save_figure
from balnmp_cache.report.render import write_csv, write_json


class _FailingSecondDraw(Artist):
    """An artist whose second drawing fails, as a full disk would part-way through writing a file.

    ``save_figure`` draws the in-memory PNG (for the HTML) first, so the failure hits the SVG file itself.
    """

    draws = 0

    def draw(self, renderer):
        self.draws += 1
        if self.draws == 2:
            raise OSError("No space left on device")


def _failing_figure() -> Figure:
    fig = Figure(figsize=(2, 2))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1])
    ax.add_artist(_FailingSecondDraw())
    return fig


def test_a_figure_that_fails_while_writing_keeps_the_old_file(tmp_path):
    old = tmp_path / "roc.svg"
    old.write_bytes(b"the previous figure")
    with pytest.raises(OSError, match="No space left"):
        save_figure(_failing_figure(), tmp_path, "roc", ["png", "svg"])
    assert old.read_bytes() == b"the previous figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roc.png", "roc.svg"]  # the PNG was complete


def test_tables_replace_the_old_file_whole(tmp_path):
    records = [{"run": "a", "auc": 0.8, "auc_ci": [0.7, 0.9], "notes": ["x", "y"]}]
    csv_path = write_csv(records, tmp_path / "metrics.csv")
    json_path = write_json(records, tmp_path / "metrics.json")
    assert csv_path.read_text().splitlines() == ["run,auc,auc_ci_low,auc_ci_high,notes", "a,0.8,0.7,0.9,x; y"]
    assert json.loads(json_path.read_text()) == records
    with pytest.raises(TypeError):
        write_json([{"run": object()}], json_path)  # fails before the file is touched
    assert json.loads(json_path.read_text()) == records
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "metrics.json"]


def test_run_report_leaves_no_temporaries(tmp_path, make_binary_run):
    out = tmp_path / "report"
    result = run_report(ReportConfig(paths=[make_binary_run("a", seed=1), make_binary_run("b", seed=2)], out=out))
    written = {p.name for p in out.iterdir()}
    assert not [name for name in written if name.startswith(".")]
    assert {"report.md", "report.html", "config.toml", "metrics.json", "metrics.csv"} <= written
    assert set(result.files) <= written
