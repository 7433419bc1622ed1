"""``--engine slurm`` through submitit's local executor (what it uses where ``sbatch`` is missing): the
array tasks are real child processes; the cache and the tables are those of a local run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("submitit")

from balnmp_cache.extract import run_extract
from tests.engines.cluster import cache_differences
from tests.engines.test_ray_cluster import GRID, _rows, _same_run
from tests.extract.conftest import config as extract_config
from tests.extract.conftest import write_precut_cohort
from tests.support.synthetic import make_study

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400),
              pytest.mark.skipif(shutil.which("sbatch") is not None, reason="a real Slurm would get the jobs")]

SMALL_GRID = GRID.replace("seed = [0, 1, 2, 3, 4, 5, 6, 7]", "seed = [0, 1, 2]")


def _cli(cwd: Path, *args: str | Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "balnmp_cache.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=380)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout + done.stderr


def test_extract_as_an_array_of_shards_matches_local(tmp_path):
    patches = write_precut_cohort(tmp_path / "bcnb", [2, 1, 3, 1])
    local = run_extract(extract_config([patches], tmp_path / "local"))
    output = _cli(tmp_path, "extract", patches, "--out", "cache", "--batch-size", "16", "--engine", "slurm",
                  "--workers", "2", "--slurm-folder", "slurm")
    assert "submitit's local executor" in output
    assert "4 ok, 0 already complete" in output
    assert len(list((tmp_path / "slurm").glob("*/*_0_log.out"))) == 2  # two array tasks, each its own log
    assert cache_differences(local.cache_dir, tmp_path / "cache" / local.cache_dir.name) == []


def test_ablate_as_an_array_of_configurations_matches_local(tmp_path):
    from balnmp_cache.config import load_config
    from balnmp_cache.train.ablate import AblationGrid, expand_grid, run_ablation

    study = make_study(tmp_path / "study", n_patients=24, dim=8, n_patches=[6] * 24, seed=1)
    for name in ("local", "slurm"):
        text = SMALL_GRID.format(out=tmp_path / "abl" / name, cache=study.cache_dir, cohort=study.cohort_csv)
        (tmp_path / f"{name}.toml").write_text(text)
    local = run_ablation(load_config(AblationGrid, tmp_path / "local.toml"))
    output = _cli(tmp_path, "ablate", tmp_path / "slurm.toml", "--engine", "slurm", "--slurm-folder", "slurm")
    assert "3 runs (0 resumed)" in output
    out = tmp_path / "abl" / "slurm"
    assert _rows(out / "results.csv") == _rows(local.csv_path)
    assert _rows(out / "runs.csv", ("seconds",)) == _rows(local.out / "runs.csv", ("seconds",))
    for run in expand_grid(load_config(AblationGrid, tmp_path / "slurm.toml")):
        _same_run(local.out / "runs" / run.name, out / "runs" / run.name)
    again = _cli(tmp_path, "ablate", tmp_path / "slurm.toml", "--engine", "slurm", "--slurm-folder", "slurm")
    assert "3 runs (3 resumed)" in again  # finished runs are skipped: nothing is submitted
