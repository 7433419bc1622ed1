"""``--engine`` without its extra, bad engine flags, and the chunks a cohort is cut into."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from balnmp_cache.engines.ray_extract import chunk_jobs, merge_results
from balnmp_cache.extract import ExtractResult
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.extract.plan import resolve_jobs
from tests.extract.conftest import write_precut_cohort

REPO = Path(__file__).resolve().parents[2]


def _cli_without(module: str, tmp_path: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The CLI in a child where importing ``module`` fails as it does when the package is not installed."""
    blocker = tmp_path / "blocked"
    blocker.mkdir(exist_ok=True)
    (blocker / f"{module}.py").write_text(f"raise ModuleNotFoundError(\"No module named '{module}'\")\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "balnmp_cache.cli", *map(str, args)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("engine", "module"), [("ray", "ray"), ("slurm", "submitit")])
def test_an_engine_without_its_extra_is_one_line_saying_how_to_install_it(tmp_path, engine, module):
    patches = write_precut_cohort(tmp_path / "bcnb", [1])
    for stage in (("extract", patches, "--out", tmp_path / "cache"), ("ablate", tmp_path / "grid.toml")):
        (tmp_path / "grid.toml").write_text(f'out = "{tmp_path / "abl"}"\n[grid]\nseed = [0]\n')
        done = _cli_without(module, tmp_path, *stage, "--engine", engine)
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        assert len(errors) == 1 and f"pip install 'balnmp-cache[{engine}]'" in errors[0], done.stderr
        assert not any(p.is_dir() for p in (tmp_path / "cache").glob("*"))  # no cache folder: nothing started
        assert not (tmp_path / "abl" / "runs").exists()


def test_a_bad_engine_flag_is_one_line(tmp_path):
    done = _cli_without("ray", tmp_path, "extract", tmp_path, "--engine", "ray", "--workers", "0")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "workers" in done.stderr


def test_chunks_cover_the_cohort_balanced_and_results_add_up(tmp_path):
    patches = write_precut_cohort(tmp_path / "bcnb", [5, 1, 1, 8, 2, 3, 1, 4, 2, 6])
    jobs = resolve_jobs(ExtractConfig(sources=[patches]))
    for workers, chunk_slides, count in ((1, None, 8), (4, None, 10), (1, 3, 4), (2, 1, 10)):
        chunks = chunk_jobs(jobs, workers, chunk_slides)
        assert len(chunks) == count
        assert sorted(j.slide_id for c in chunks for j in c) == sorted(j.slide_id for j in jobs)
    parts = [ExtractResult(cache_dir=tmp_path, n_ok=2, n_patches=7, read_seconds=1.0),
             ExtractResult(cache_dir=tmp_path, n_ok=1, n_skipped=3, n_patches=2, read_seconds=0.5)]
    total = merge_results(parts, 4.0)
    assert (total.n_ok, total.n_skipped, total.n_patches, total.read_seconds, total.seconds) == (3, 3, 9, 1.5, 4.0)


def test_a_worker_loads_the_cache_once_for_all_its_runs(tmp_path, monkeypatch):
    """What a Ray worker process runs per task (``train_task``), twice in one process: one cache load."""
    import balnmp_cache.cache as cache_module
    from balnmp_cache.config import load_config
    from balnmp_cache.engines import ray_ablate
    from balnmp_cache.runs import is_finished
    from balnmp_cache.train.ablate import AblationGrid, expand_grid
    from tests.engines.test_slurm import SMALL_GRID
    from tests.support.synthetic import make_study

    study = make_study(tmp_path / "study", n_patients=24, dim=8, n_patches=[6] * 24, seed=1)
    (tmp_path / "grid.toml").write_text(
        SMALL_GRID.format(out=tmp_path / "abl", cache=study.cache_dir, cohort=study.cohort_csv))
    loads = []
    real = cache_module.load_cache
    monkeypatch.setattr(cache_module, "load_cache", lambda *a, **k: loads.append(a) or real(*a, **k))
    monkeypatch.setattr(ray_ablate, "_TRAIN", None)  # a fresh worker process
    monkeypatch.chdir(tmp_path)
    runs = expand_grid(load_config(AblationGrid, tmp_path / "grid.toml"))[:2]
    for run in runs:
        assert ray_ablate.train_task(str(tmp_path), run) == run.name
    assert all(is_finished(run.config.out) for run in runs)
    assert len(loads) == 1
