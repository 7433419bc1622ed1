"""``scripts/extract-array.sbatch``: the tasks of a Slurm array, run as Slurm runs them (the array's
environment variables set), cover a cohort together through ``--shard I/N``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from balnmp_cache.cache import read_manifest
from tests.extract.conftest import write_precut_cohort

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "extract-array.sbatch"


def _task(args: list[str], tmp_path: Path, **slurm: str) -> subprocess.CompletedProcess[str]:
    cli = tmp_path / "balnmp-cache"  # this checkout's CLI under this interpreter
    cli.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m balnmp_cache.cli "$@"\n')
    cli.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(BALNMP_CACHE=str(cli), PYTHONPATH=str(REPO), **slurm)
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600)


def test_outside_an_array_the_script_prints_its_usage(tmp_path):
    proc = _task(["src", "out"], tmp_path)
    assert proc.returncode == 2
    assert "usage: sbatch --array=0-(N-1)" in proc.stderr


@pytest.mark.slow
def test_the_tasks_of_an_array_cover_the_cohort(tmp_path):
    patches = write_precut_cohort(tmp_path / "bcnb", [3, 1, 2, 4, 1, 2])
    out = tmp_path / "cache"
    done: list[set[str]] = []
    for task in range(2):
        proc = _task([str(patches), str(out), "--patch-px", "64", "--batch-size", "4"], tmp_path,
                     SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_COUNT="2", SLURM_CPUS_PER_TASK="1")
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        assert f"extract shard {task}/2" in proc.stdout
        (cache_dir,) = [p for p in out.iterdir() if p.is_dir()]
        done.append({r.slide_id for r in read_manifest(cache_dir) if r.status == "ok"})
    everyone = {p.name for p in patches.iterdir()}
    assert 0 < len(done[0]) < len(everyone)  # the first task did its shard only
    assert done[1] == everyone
