"""Re-running ``balnmp-cache extract`` over a finished cache of 1,000 small slides, as a user would:
the wall time of the whole CLI process (interpreter start-up, imports, planning, the skip check of
every slide, the summary), against the CLI's start-up alone, measured in the same run.

Inputs (written once under ``benchmarks/out/``): 1,000 BCNB-style patients of 2 pre-cut 256-px JPEG
patches each (hard links into the tile pool of ``bench_cohort.py``). The CLI's defaults apart from
``--out``: EfficientNet-Lite0 with its ImageNet weights, HDF5. The baseline of the re-run is the
process start-up floor, ``balnmp-cache --version`` (the same imports, nothing done), timed in turn
with it; the first run is printed beside them. The finished cache stays in ``benchmarks/out/`` and
``--reuse`` times re-runs over it without writing it again.

Each figure prints as ``BENCH name=<name> value=<v> unit=<u> baseline=<b> ratio=<r>``; the goal is a
re-run under 2 s. ``--quick`` uses 200 slides.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cohort import OUT, write_cohort  # the benchmarks are scripts, not a package
from bench_extract import bench_line

CLI = [sys.executable, "-m", "balnmp_cache.cli"]


def timed(args: list[str]) -> float:
    """Wall seconds of one CLI process; its output is discarded, a failure stops the benchmark."""
    t0 = time.perf_counter()
    proc = subprocess.run(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"bench_resume: {' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 slides instead of 1,000")
    parser.add_argument("--slides", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="re-runs timed, each then the floor; the best kept")
    parser.add_argument("--reuse", action="store_true", help="keep the finished cache of an earlier run of this script")
    args = parser.parse_args()
    n = args.slides or (200 if args.quick else 1000)
    patches = write_cohort(f"resume{n}", [2] * n)
    out = OUT / f"resume{n}-cache"
    extract = ["extract", str(patches), "--out", str(out), "--device", "cpu"]
    print(f"bench_resume: {n} slides of 2 patches, the CLI's defaults ({os.cpu_count()} CPU cores, load average "
          f"{os.getloadavg()[0]:.1f})")
    first = None
    if not (args.reuse and out.is_dir()):
        shutil.rmtree(out, ignore_errors=True)
        first = timed(extract)
    reruns, floors = [], []
    for _ in range(args.repeats):
        reruns.append(timed(extract))
        floors.append(timed(["--version"]))
    first_text = f"first run {first:.1f} s; " if first is not None else "the cache of an earlier run; "
    print(f"  {first_text}re-runs {', '.join(f'{s:.2f}' for s in reruns)} s; `balnmp-cache --version` "
          f"{', '.join(f'{s:.2f}' for s in floors)} s; load average at the end {os.getloadavg()[0]:.1f}")
    print(bench_line(f"rerun_finished_{n}_slides_vs_cli_startup", min(reruns), "s", min(floors)))
    if first is not None:
        print(bench_line(f"rerun_finished_{n}_slides_vs_first_run", min(reruns), "s", first))
    return 0


if __name__ == "__main__":
    sys.exit(main())
