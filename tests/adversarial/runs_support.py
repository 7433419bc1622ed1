"""Helpers of the adversarial tests of stage 2, predict, the report and the cohort (issue 8, second half).

A tiny synthetic study (24 patients, 8-d features, 6 patches each, ``tests/support/synthetic.py``), the
train flags that make a run take a fraction of a second, one finished run trained once per session,
and :func:`one_error`, the outcome every refused command must have.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.synthetic import SyntheticStudy, make_study

from .conftest import ENV, REPO, CliResult, run_cli

TRAIN_FLAGS = ("--epochs", "2", "--patience", "2", "--batch-bags", "16", "--threads", "1", "--device", "cpu",
               "--no-clinical")
_LOG_LINE = re.compile(r"^\s*(\[[^\]]*\]\s*|\d\d:\d\d:\d\d\s+)?(DEBUG|INFO|WARNING)\s")  # a record of the log handler


def train_args(study: SyntheticStudy, out: Path, *extra: str | Path) -> tuple[str | Path, ...]:
    """``train`` on ``study`` into ``out`` with :data:`TRAIN_FLAGS` (``extra`` flags override them)."""
    return ("train", "--cache", study.cache_dir, "--cohort", study.cohort_csv, "--out", out, *TRAIN_FLAGS, *extra)


def one_error(result: CliResult, *needles: str, exit_code: int = 2) -> str:
    """Assert a refused command: its exit code, one ``error:`` line holding every needle, no traceback.

    Besides the log records of the run (rich's INFO/WARNING lines), stderr holds at most two lines.
    """
    assert result.exit_code == exit_code, (result.exit_code, result.stdout[-2000:], result.stderr[-3000:])
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Segmentation" not in output, output[-3000:]
    other = [line for line in result.stderr.splitlines() if line.strip() and not _LOG_LINE.match(line)]
    assert len(other) <= 2, other
    (line,) = result.error_lines
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def leftovers(folder: Path) -> list[str]:
    """Staging and replaced folders of output folders in ``folder`` (``.X.tmp-*``, ``.X.old-*``)."""
    return sorted(p.name for p in Path(folder).iterdir() if re.match(r"^\..+\.(tmp|old)-\d+-[0-9a-f]+$", p.name))


def start_cli(*args: str | Path) -> subprocess.Popen[str]:
    """``python -m balnmp_cache.cli ARGS`` started in a child process (to be killed or stopped)."""
    command = [sys.executable, "-m", "balnmp_cache.cli", *map(str, args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **ENV}, cwd=REPO)


def wait_for(condition: Callable[[], bool], *, timeout_s: float = 90.0, what: str = "") -> None:
    """Poll ``condition`` every 20 ms until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStudy:
    """24 patients (all three ALN statuses), 8-d float16 features, 6 patches each, with a cohort CSV."""
    return make_study(tmp_path_factory.mktemp("tiny-study"), n_patients=24, dim=8, n_patches=[6] * 24, seed=1)


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory: pytest.TempPathFactory, tiny_study: SyntheticStudy) -> Callable[[int], Path]:
    """``finished_runs(seed)``: a run trained once per session with :data:`TRAIN_FLAGS` (copy it to modify it)."""
    runs: dict[int, Path] = {}

    def get(seed: int = 0) -> Path:
        if seed not in runs:
            out = tmp_path_factory.mktemp(f"finished-{seed}") / "run"
            result = run_cli(*train_args(tiny_study, out, "--seed", str(seed)))
            assert result.exit_code == 0, result.stderr
            runs[seed] = out
        return runs[seed]

    return get


def copy_run(run: Path, into: Path) -> Path:
    """A private copy of a run directory at ``into``."""
    shutil.copytree(run, into)
    return into
