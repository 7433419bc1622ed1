"""The CLI surface: fast help, every subcommand listed, user errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from typer.testing import CliRunner

from balnmp_cache.cli import app

SUBCOMMANDS = ("demo-data", "extract", "train", "ablate", "report", "predict", "verify", "doctor")


def test_help_lists_every_subcommand():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in SUBCOMMANDS:
        assert name in result.output


def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import sys, time; t = time.perf_counter();"
        "from balnmp_cache.cli import app;"
        "heavy = [m for m in ('torch', 'h5py', 'zarr', 'pandas', 'matplotlib', 'cucim', 'openslide') if m in sys.modules];"
        "print(heavy, time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[]"), out
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "balnmp_cache.cli", "--help"], capture_output=True, check=True)
    assert time.perf_counter() - start < 3.0


def test_unknown_config_key_fails_cleanly(tmp_path):
    config = tmp_path / "train.toml"
    config.write_text("heads = 'abmil'\n")
    result = CliRunner().invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 2
    assert "unknown key 'heads'" in result.output
    assert "Traceback" not in result.output


def test_doctor_reports_readers_weights_and_fixes():
    env = {**os.environ, "COLUMNS": "400"}
    result = subprocess.run([sys.executable, "-m", "balnmp_cache.cli", "doctor"], capture_output=True, text=True, env=env)
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert "ok" in lines["reader: pil"]
    assert "available offline" in lines["weights: efficientnet_lite0"]
    assert "GPU" in lines
    if "missing" in lines.get("timm", ""):
        assert "balnmp-cache[timm]" in lines["timm"]  # install hints survive rendering
