"""Ray engine scaling on one machine: an ablation grid on 1 worker against 2 workers, measured in one run.

A synthetic study (``tests/support/synthetic.py``: 80 patients, 64-d features, 20-60 patches each) and
a grid of ``--runs`` seeds of the official head (one torch thread per run). Measured, each into a fresh
output folder, in this order:

1. ``local``: ``run_ablation`` in this process, one run after another (what ``ablate`` does alone);
2. ``ray1``: ``ablate --engine ray --workers 1`` on a Ray started for it (1 worker process, so the
   figure includes Ray's start and the worker's imports, as a user pays them);
3. ``ray2``: the same with ``--workers 2`` (one per core).

Every run's predictions are compared with the local ones (identical bytes, or the benchmark fails).
Prints ``BENCH name=<name> value=<v> unit=runs/min baseline=<b> ratio=<r>`` lines.

    .venv/bin/python benchmarks/bench_engines.py [--quick] [--runs 8]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GRID = """
out = "{out}"
[base]
cache = "{cache}"
cohort = "{cohort}"
epochs = {epochs}
patience = {epochs}
batch_bags = 16
threads = 1
device = "cpu"
clinical = false
[grid]
seed = {seeds}
"""


def bench_line(name: str, value: float, unit: str, baseline: float) -> str:
    return f"BENCH name={name} value={value:.3g} unit={unit} baseline={baseline:.3g} ratio={value / baseline:.2f}"


def _grid(work: Path, name: str, study, runs: int, epochs: int) -> Path:
    path = work / f"{name}.toml"
    path.write_text(GRID.format(out=work / name, cache=study.cache_dir, cohort=study.cohort_csv, epochs=epochs,
                                seeds=list(range(runs))))
    return path


def _timed(function) -> float:
    t0 = time.perf_counter()
    function()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8, help="configurations in the grid (seeds)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="4 runs of 10 epochs")
    args = parser.parse_args()
    runs, epochs = (4, 10) if args.quick else (args.runs, args.epochs)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    from balnmp_cache.config import load_config
    from balnmp_cache.engines import EngineOptions
    from balnmp_cache.engines.ray_ablate import run_ablation_ray
    from balnmp_cache.train.ablate import AblationGrid, expand_grid, run_ablation
    from tests.support.synthetic import make_study

    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        work = Path(tmp)
        study = make_study(work / "study", n_patients=80, dim=64, seed=3)
        grids = {name: load_config(AblationGrid, _grid(work, name, study, runs, epochs))
                 for name in ("local", "ray1", "ray2")}
        seconds = {"local": _timed(lambda: run_ablation(grids["local"]))}
        for name, workers in (("ray1", 1), ("ray2", 2)):
            options = EngineOptions(engine="ray", workers=workers)
            seconds[name] = _timed(lambda g=grids[name], o=options: run_ablation_ray(g, o))
        for run in expand_grid(grids["local"]):
            reference = (work / "local" / "runs" / run.name / "predictions.csv").read_bytes()
            for name in ("ray1", "ray2"):
                if (work / name / "runs" / run.name / "predictions.csv").read_bytes() != reference:
                    raise SystemExit(f"{name}: predictions of {run.name} differ from the local run")
    rate = {name: runs * 60.0 / s for name, s in seconds.items()}
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"# {started:%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPU cores, load average {load}; "
          f"{runs} runs x {epochs} epochs; wall s: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    print(bench_line("ablate_ray_2_workers_vs_1", rate["ray2"], "runs/min", rate["ray1"]))
    print(bench_line("ablate_ray_1_worker_vs_local", rate["ray1"], "runs/min", rate["local"]))
    print(bench_line("ablate_ray_2_workers_vs_local", rate["ray2"], "runs/min", rate["local"]))


if __name__ == "__main__":
    main()
