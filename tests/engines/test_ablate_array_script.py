"""``scripts/ablate-array.sbatch``: two tasks of an array, run at once as Slurm runs them (the array's
environment set), train every configuration of a grid exactly once between them, as a local ablate would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from balnmp_cache.config import load_config
from balnmp_cache.train.ablate import AblationGrid, expand_grid, run_ablation
from tests.engines.test_ray_cluster import _rows, _same_run
from tests.engines.test_slurm import SMALL_GRID
from tests.support.synthetic import make_study

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "ablate-array.sbatch"


def _task(args: list[str], tmp_path: Path, **slurm: str) -> subprocess.Popen[str]:
    cli = tmp_path / "balnmp-cache"  # this checkout's CLI under this interpreter
    cli.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m balnmp_cache.cli "$@"\n')
    cli.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(BALNMP_CACHE=str(cli), PYTHONPATH=str(REPO), COLUMNS="200", **slurm)
    return subprocess.Popen(["bash", str(SCRIPT), *args], env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def test_outside_an_array_the_script_prints_its_usage(tmp_path):
    _, err = _task(["grid.toml"], tmp_path).communicate(timeout=60)
    assert "usage: sbatch --array=0-(N-1)" in err


@pytest.mark.slow
def test_two_tasks_of_an_array_share_a_grid_and_match_local(tmp_path):
    study = make_study(tmp_path / "study", n_patients=24, dim=8, n_patches=[6] * 24, seed=1)
    for name in ("local", "array"):
        text = SMALL_GRID.format(out=tmp_path / "abl" / name, cache=study.cache_dir, cohort=study.cohort_csv)
        (tmp_path / f"{name}.toml").write_text(text)
    local = run_ablation(load_config(AblationGrid, tmp_path / "local.toml"))
    tasks = [_task([str(tmp_path / "array.toml")], tmp_path, SLURM_ARRAY_TASK_ID=str(i), SLURM_ARRAY_TASK_COUNT="2")
             for i in range(2)]
    outputs = [task.communicate(timeout=400) for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs
    trained = [line for _, err in outputs for line in err.splitlines() if "INFO" in line and "training task0" in line]
    assert len(trained) == 3  # each configuration once, between the two tasks
    out = tmp_path / "abl" / "array"
    assert _rows(out / "results.csv") == _rows(local.csv_path)
    for run in expand_grid(load_config(AblationGrid, tmp_path / "array.toml")):
        _same_run(local.out / "runs" / run.name, out / "runs" / run.name)
