"""``balnmp-cache heatmap``: generated from HeatmapConfig, a summary on success, one line for bad input."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from balnmp_cache.cli import app

from .conftest import SLIDES


def test_heatmap_command_draws_the_slides_and_prints_the_totals(runs, tmp_path):
    args = ["heatmap", str(runs["balnmp"]), *SLIDES[:2], "--out", str(tmp_path / "h"), "--top-k", "2",
            "--gallery-px", "32", "--canvas-px", "96", "--device", "cpu"]
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "slides: 2 drawn, 0 already drawn, 0 failed" in result.output
    assert (tmp_path / "h" / "heatmap.log").is_file() and (tmp_path / "h" / "config.toml").is_file()
    assert sorted(p.name for p in (tmp_path / "h" / "slides").iterdir()) == SLIDES[:2]


def test_an_unfinished_run_is_one_line_with_exit_status_2(tmp_path):
    result = CliRunner().invoke(app, ["heatmap", str(tmp_path), "--out", str(tmp_path / "h")])
    text = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == 2
    assert text.startswith("error: ") and "is not a finished run" in text and "Traceback" not in text


def test_the_heatmap_config_imports_nothing_heavy():
    code = ("import sys, balnmp_cache.heatmap, balnmp_cache.heatmap.config; "
            "print([m for m in ('torch', 'numpy', 'PIL', 'pandas') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
