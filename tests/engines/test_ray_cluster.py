"""Both stages on a real two-node Ray cluster on this machine, the second node killed (``kill -9`` of
its raylet) in the middle of each run: the results are those of a local run all the same.

The cluster is ``ray start --head`` plus ``ray start --address`` (1 CPU each); the stages run as the
CLI in a child process, as a user runs them.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

from balnmp_cache.config import load_config
from balnmp_cache.extract import run_extract
from balnmp_cache.runs import is_finished
from balnmp_cache.train.ablate import AblationGrid, expand_grid, run_ablation
from tests.engines.cluster import REPO, LocalCluster, cache_differences, local_cluster, ray_env
from tests.extract.conftest import config as extract_config
from tests.extract.conftest import write_precut_cohort
from tests.support.synthetic import make_study

pytestmark = pytest.mark.timeout(600)

GRID = """
out = "{out}"
[base]
cache = "{cache}"
cohort = "{cohort}"
epochs = 4
patience = 4
batch_bags = 16
threads = 1
device = "cpu"
clinical = false
[grid]
seed = [0, 1, 2, 3, 4, 5, 6, 7]
"""
RUN_FILES_EXACT = ("predictions.csv", "attention.csv", "checkpoint.pt")


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as running:
        yield running


def _start(cwd: Path, *args: str | Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "balnmp_cache.cli", *map(str, args)]
    return subprocess.Popen(command, cwd=cwd, env={**ray_env(), "COLUMNS": "200"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_when(cluster: LocalCluster, child: subprocess.Popen[str], ready) -> None:
    """``kill -9`` the second node's raylet as soon as ``ready()`` holds (while the child still runs)."""
    import time

    deadline = time.monotonic() + 300
    while not ready():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.01)
    cluster.kill_worker_raylet()


def _finish(child: subprocess.Popen[str]) -> str:
    out, err = child.communicate(timeout=400)
    assert child.returncode == 0, (out[-3000:], err[-3000:])
    return out + err


def _rows(path: Path, drop: tuple[str, ...] = ()) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(handle)]


def _same_run(a: Path, b: Path) -> None:
    for name in RUN_FILES_EXACT:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    timeless = {"seconds", "train_seconds"}
    record_a, record_b = (json.loads((d / "run.json").read_text()) for d in (a, b))
    assert {k: v for k, v in record_a.items() if k not in timeless} == {
        k: v for k, v in record_b.items() if k not in timeless}
    curves_a, curves_b = (_rows(d / "curves.csv") for d in (a, b))
    assert [list(r.values())[:-1] for r in curves_a] == [list(r.values())[:-1] for r in curves_b]  # bar the clock


def test_ablate_on_two_nodes_matches_local_with_the_second_node_killed(cluster, tmp_path):
    study = make_study(tmp_path / "study", n_patients=24, dim=8, n_patches=[6] * 24, seed=1)
    for name in ("local", "ray"):
        (tmp_path / f"{name}.toml").write_text(
            GRID.format(out=f"abl/{name}", cache=study.cache_dir, cohort=study.cohort_csv))
    os.chdir(tmp_path)  # the grid's out is relative: a worker must resolve it from the driver's directory
    try:
        local = run_ablation(load_config(AblationGrid, tmp_path / "local.toml"))
    finally:
        os.chdir(REPO)
    names = [run.name for run in expand_grid(load_config(AblationGrid, tmp_path / "ray.toml"))]
    child = _start(tmp_path, "ablate", tmp_path / "ray.toml", "--engine", "ray", "--address", cluster.address)
    runs = tmp_path / "abl" / "ray" / "runs"
    finished = lambda: sum(is_finished(runs / n) for n in names)  # noqa: E731
    _kill_when(cluster, child, lambda: finished() >= 1)
    killed_at = finished()
    _finish(child)
    assert killed_at < len(names)  # the node went while runs were left
    assert local.n_runs == len(names)
    local_out = tmp_path / "abl" / "local"
    assert _rows(tmp_path / "abl" / "ray" / "results.csv") == _rows(local_out / "results.csv")
    assert _rows(tmp_path / "abl" / "ray" / "runs.csv", ("seconds",)) == _rows(local_out / "runs.csv", ("seconds",))
    for name in names:
        _same_run(local_out / "runs" / name, runs / name)


def test_extract_on_two_nodes_matches_local_with_the_second_node_killed(cluster, tmp_path):
    cluster.join()  # the first test killed the second node
    patches = write_precut_cohort(tmp_path / "bcnb", [8, 12, 4, 8, 8, 4, 12, 8])
    local = run_extract(extract_config([patches], tmp_path / "local"))
    flags = ("--batch-size", "16", "--engine", "ray", "--address", cluster.address, "--chunk-slides", "1")
    child = _start(tmp_path, "extract", patches, "--out", "cache", *flags)
    cache = tmp_path / "cache" / local.cache_dir.name
    # Each actor is handed a chunk as soon as it exists, so the second node's actor runs one for certain:
    # the node is killed while it does (Ray titles the process after the method it executes).
    _kill_when(cluster, child, lambda: cluster.worker_node_runs("EncoderWorker.extract"))
    output = _finish(child)
    assert "a Ray worker died" in output  # the dead node's chunk went to the other worker
    assert cache_differences(local.cache_dir, cache) == []
    again = _finish(_start(tmp_path, "extract", patches, "--out", "cache", *flags))  # resumable: nothing left
    assert "0 ok, 8 already complete" in again
