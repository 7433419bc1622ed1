"""The Makefile's targets, read from `make -n`: each step of the demo once, in order, with the cache it just made.

`make -n` prints the commands a target would run without running them (a recursive `$(MAKE)` line does
run, with -n passed on, so a sub-make prints its commands too). Every test runs the repository's Makefile
in an empty folder (`make -f`) whose install stamp is newer than its pyproject.toml, so nothing is
installed and the checkout's own outputs do not matter.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parents[1] / "Makefile"
RUNS = ("image", "image_clinical", "clinical_only")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")


def _dry_run(folder: Path, *targets: str, **variables: str) -> list[str]:
    """The commands `make -n TARGET...` prints in ``folder`` (continued lines joined), the install up to date."""
    stamp, pyproject = folder / ".venv/.installed-stamp", folder / "pyproject.toml"
    if not stamp.exists():
        stamp.parent.mkdir(parents=True)
        pyproject.touch()
        stamp.touch()
        os.utime(pyproject, (1_000_000_000, 1_000_000_000))  # older than the stamp: nothing to install
    command = ["make", "-f", str(MAKEFILE), "-n", *targets, *(f"{k}={v}" for k, v in variables.items())]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    out = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=True, env=env).stdout
    return out.replace("\\\n", " ").splitlines()


def _steps(commands: list[str]) -> list[str]:
    """The balnmp-cache commands among ``commands``: ``demo-data``, ``extract``, ``train <run>``, ``report``."""
    steps = []
    for line in commands:
        if match := re.search(r"balnmp-cache (\S+)", line):
            step = match.group(1)
            if step == "train":
                step += " " + re.search(r"--out (\S+)", line).group(1)  # type: ignore[union-attr]
            steps.append(step)
    return steps


def test_demo_runs_each_step_once_in_order(tmp_path: Path) -> None:
    steps = _steps(_dry_run(tmp_path, "demo"))
    assert steps == ["demo-data", "extract", *(f"train out/demo/runs/{run}" for run in RUNS), "report"]


def test_demo_trains_its_runs_two_at_a_time_on_one_thread_each(tmp_path: Path) -> None:
    commands = _dry_run(tmp_path, "demo")
    (submake,) = [line for line in commands if "demo-run-image " in line]
    assert " -j2 " in submake and " -Otarget " in submake
    trains = [line for line in commands if "balnmp-cache train" in line]
    assert len(trains) == 3 and all("--threads 1" in line and "--config stages/train.toml" in line for line in trains)


def test_train_writes_its_own_run_with_the_cache_extract_made(tmp_path: Path) -> None:
    older, newer = (tmp_path / "out/demo/cache" / name for name in ("resnet18-avg-aaaa", "efficientnet_lite0-avg-bbbb"))
    for folder, mtime in ((newer, 2_000_000_000), (older, 1_000_000_000)):  # newer: the one extract rewrote last
        folder.mkdir(parents=True)
        (folder / "config.toml").write_text("")
        os.utime(folder / "config.toml", (mtime, mtime))
    commands = _dry_run(tmp_path, "train")
    assert _steps(commands) == ["demo-data", "extract", "train out/demo/train"]
    (train,) = [line for line in commands if "balnmp-cache train" in line]
    assert f"--cache out/demo/cache/{newer.name} " in train


def test_a_configuration_given_runs_only_its_stage(tmp_path: Path) -> None:
    commands = _dry_run(tmp_path, "train", CONFIG="my.toml")
    assert [line.strip() for line in commands] == [".venv/bin/balnmp-cache train --config my.toml"]


def test_report_trains_the_runs_once_when_any_is_missing_and_else_only_reports(tmp_path: Path) -> None:
    trained = ["demo-data", "extract", *(f"train out/demo/runs/{run}" for run in RUNS), "report"]
    assert _steps(_dry_run(tmp_path, "report")) == trained
    for run in RUNS[1:]:
        (tmp_path / "out/demo/runs" / run).mkdir(parents=True)
        (tmp_path / "out/demo/runs" / run / "run.json").write_text("{}")
    assert _steps(_dry_run(tmp_path, "report")) == trained
    (tmp_path / "out/demo/runs" / RUNS[0]).mkdir(parents=True)
    (tmp_path / "out/demo/runs" / RUNS[0] / "run.json").write_text("{}")
    assert _steps(_dry_run(tmp_path, "report")) == ["report"]


def test_the_demo_writes_no_pyramidal_tiffs_but_keeps_a_cohort_that_has_them(tmp_path: Path) -> None:
    (demo_data,) = _dry_run(tmp_path, "demo-data")
    assert demo_data.endswith("demo-data demo/bcnb --no-pyramidal")
    marker = tmp_path / "demo/bcnb/demo-cohort.json"
    marker.parent.mkdir(parents=True)
    marker.write_text('{\n "arguments": {\n  "patients": 120,\n  "seed": 0,\n  "pyramidal": true\n }\n}\n')
    assert _dry_run(tmp_path, "demo-data")[0].endswith("demo-data demo/bcnb --pyramidal")
