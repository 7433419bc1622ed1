"""The demo cohort through a two-node Ray cluster: its slides extracted and a demo grid trained on that
cache, the second node killed in the middle of each; cache and results are those of local runs."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray")

from balnmp_cache.config import load_config
from balnmp_cache.demo import write_demo_cohort
from balnmp_cache.extract import ExtractConfig, run_extract
from balnmp_cache.runs import is_finished
from balnmp_cache.train.ablate import AblationGrid, expand_grid, run_ablation
from tests.engines.cluster import cache_differences, local_cluster
from tests.engines.test_ray_cluster import _finish, _kill_when, _rows, _same_run, _start

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
DEMO_GRID = """
out = "{out}"
[base]
cohort = "{cohort}"
split = "kfold"
folds = 3
bag_size = 10
batch_bags = 64
epochs = 3
patience = 3
threads = 1
device = "cpu"
[grid]
cache = ["{cache}"]
head = ["balnmp", "mean"]
variant = ["image", "clinical_only"]
seed = [0, 1]
"""


def test_the_demo_cohort_and_a_demo_grid_on_two_nodes_with_a_killed_node(tmp_path):
    root = tmp_path / "demo" / "bcnb"
    write_demo_cohort(root, patients=9, seed=1, pyramidal=False)  # 5 N0, 4 N(+)
    extract = load_config(ExtractConfig, REPO / "stages" / "extract.toml",
                          overrides={"sources": [str(root)], "out": str(tmp_path / "local-cache")})
    local = run_extract(extract)
    with local_cluster() as cluster:
        child = _start(tmp_path, "extract", "--config", REPO / "stages" / "extract.toml", root, "--out", "cache",
                       "--engine", "ray", "--address", cluster.address, "--chunk-slides", "1")
        cache = tmp_path / "cache" / local.cache_dir.name
        _kill_when(cluster, child, lambda: cache.is_dir() and any(cache.glob("*.h5")))
        assert "a Ray worker died" in _finish(child)
        assert cache_differences(local.cache_dir, cache) == []

        for name in ("local", "ray"):
            text = DEMO_GRID.format(out=tmp_path / "abl" / name, cohort=root, cache=cache)
            (tmp_path / f"{name}.toml").write_text(text)
        reference = run_ablation(load_config(AblationGrid, tmp_path / "local.toml"))
        runs = expand_grid(load_config(AblationGrid, tmp_path / "ray.toml"))
        cluster.join()
        child = _start(tmp_path, "ablate", tmp_path / "ray.toml", "--engine", "ray", "--address", cluster.address)
        done = tmp_path / "abl" / "ray" / "runs"
        _kill_when(cluster, child, lambda: any(is_finished(done / r.name) for r in runs))
        _finish(child)
    assert _rows(tmp_path / "abl" / "ray" / "results.csv") == _rows(reference.csv_path)
    for run in runs:
        _same_run(reference.out / "runs" / run.name, done / run.name)
