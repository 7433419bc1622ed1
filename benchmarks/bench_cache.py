"""Feature-cache integrity benchmark: what checking every array against its checksum costs.

Builds a synthetic cache through the real store (float16, 1280-d like EfficientNet-Lite0, BCNB-like
slides of a few thousand patches; about 1 GB, 0.25 GB with ``--quick``), once as written now (a
CRC-32 per array) and once as an older version wrote it (the same files, checksum attributes
removed), and measures, in seconds per GB of feature bytes with the page cache warm (the case
where the check's CPU cost weighs most, since reading is then a memory copy), both the user-mode CPU
time of the process (steady on a shared machine) and the wall time (best of the repeats):

1. ``load_cache`` with checksums against ``load_cache(check=False)``, the read path as it was before;
2. ``load_cache`` of the older files (no checksum: only the NaN/inf scan) against the same baseline;
3. ``verify_cache`` with checksums against ``verify_cache`` of the older files;
4. the same for Zarr stores (load only);
5. the alternative not taken: HDF5's fletcher32 filter, which needs a chunked layout, read with
   ``read_direct`` against the contiguous unchecked read of the same features.

Timings are the best of ``--repeats`` interleaved runs (the machine is shared). Prints
``BENCH name=<name> value=<v> unit=s/GB baseline=<b> ratio=<r>`` lines; ``--record`` appends them to
the "Feature cache" section of ``benchmarks/RESULTS.md``. Caches go to a temporary folder (or ``--workdir``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "RESULTS.md"
SECTION = "## Feature cache integrity"
DIM = 1280


def log(msg: str) -> None:
    print(f"[bench_cache {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bench_line(name: str, value: float, baseline: float) -> str:
    line = f"BENCH name={name} value={value:.4g} unit=s/GB baseline={baseline:.4g} ratio={value / baseline:.3g}"
    print(line, flush=True)
    return line


def build(root: Path, gb: float, format: str, seed: int = 0) -> tuple[Path, int]:
    """A cache of float16 slides totalling about ``gb`` GB of features -> (cache_dir, feature bytes)."""
    from balnmp_cache.cache import CacheDir, SlideFeatures, write_slide

    rng = np.random.default_rng(seed)
    params = {"encoder": "efficientnet_lite0", "format": format, "dtype": "float16"}
    made = CacheDir.create(root, params, encoder="efficientnet_lite0", mode="avg", format=format, dtype="float16")
    cache_dir, key = made.directory, made.key
    total, i = 0, 0
    while total < gb * 1e9:
        n = int(rng.integers(2000, 6000))
        features = rng.standard_normal((n, DIM), dtype=np.float32).astype(np.float16)
        coords = rng.integers(0, 100_000, (n, 2), dtype=np.int64)
        keys = np.array([f"patches/{i}/{i}_0_{x}_{y}.jpg" for x, y in coords], dtype=object)
        attrs = {"encoder": "efficientnet_lite0", "cache_key": key, "patient_id": str(i), "source_path": f"/d/{i}.jpg"}
        sf = SlideFeatures(str(i), features, coords, np.zeros(n, np.int32), keys, attrs)
        write_slide(cache_dir, sf, format=format)  # type: ignore[arg-type]
        total += features.nbytes
        i += 1
    log(f"built {format} cache: {i} slides, {total / 1e9:.2f} GB of features")
    return cache_dir, total


def strip_checksums(cache_dir: Path, to: Path) -> Path:
    """A copy of an HDF5 cache as an older version wrote it: no checksum attributes."""
    import h5py

    from balnmp_cache.cache.checksum import CHECKSUMMED, checksum_attr

    shutil.copytree(cache_dir, to)
    for path in to.glob("*.h5"):
        with h5py.File(path, "r+") as f:
            for name in CHECKSUMMED:
                del f.attrs[checksum_attr(name)]
    return to


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, user-mode CPU seconds of this process) of one call.

    User CPU time is the steady figure on a shared machine: the kernel's share (copying from the page
    cache, faulting in the fresh array) is the same work for every variant but swings 10x with the
    neighbours' load, while the checks themselves run in user mode.
    """
    wall, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
    fn()
    return time.perf_counter() - wall, resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu


def best(fn: Callable[[], object], repeats: int) -> float:
    return min(timed(fn)[0] for _ in range(repeats))


def fletcher32_pair(cache_dir: Path, work: Path, repeats: int) -> tuple[float, float, int]:
    """Seconds to read the biggest slide's features contiguous (no check) and chunked with fletcher32."""
    import h5py

    from balnmp_cache.cache import read_slide

    path = max(cache_dir.glob("*.h5"), key=lambda p: p.stat().st_size)
    features = read_slide(path).features
    alt = work / "fletcher32.h5"
    with h5py.File(alt, "w") as f:
        rows = max(1, (1 << 20) // (DIM * 2))  # 1 MiB chunks
        f.create_dataset("features", data=features, chunks=(rows, DIM), fletcher32=True)
    out = np.empty_like(features)

    def read(file: Path) -> None:
        with h5py.File(file, "r", locking=False) as f:
            f["features"].read_direct(out)

    read(path), read(alt)  # warm the page cache
    return best(lambda: read(path), repeats), best(lambda: read(alt), repeats), features.nbytes


def measure(work: Path, gb: float, repeats: int) -> list[str]:
    from balnmp_cache.cache import load_cache, verify_cache

    h5, nbytes = build(work / "h5", gb, "hdf5")
    old = strip_checksums(h5, work / "old" / h5.name)
    zr, zbytes = build(work / "zarr", gb / 2, "zarr")
    per_gb, zper_gb = 1e9 / nbytes, 1e9 / zbytes
    for cache in (h5, old, zr):  # warm the page cache and check the caches are sound
        assert load_cache(cache).features.nbytes in (nbytes, zbytes)
    runs = {
        "read": lambda: load_cache(h5, check=False), "checked": lambda: load_cache(h5),
        "old": lambda: load_cache(old), "verify": lambda: verify_cache(h5), "verify_old": lambda: verify_cache(old),
        "zarr_read": lambda: load_cache(zr, check=False), "zarr_checked": lambda: load_cache(zr),
    }
    wall = {name: float("inf") for name in runs}
    cpu = dict(wall)
    names = list(runs)
    for r in range(repeats):  # interleaved, in a rotating order: neighbours and allocator state hit every variant
        for name in names[r % len(names):] + names[: r % len(names)]:
            w, c = timed(runs[name])
            wall[name], cpu[name] = min(wall[name], w), min(cpu[name], c)
    contiguous, fletcher, fbytes = fletcher32_pair(h5, work, repeats)
    pairs = [
        ("load_hdf5_with_checksums", "checked", "read", per_gb),
        ("load_hdf5_older_files_nan_scan_only", "old", "read", per_gb),
        ("verify_hdf5_with_checksums", "verify", "verify_old", per_gb),
        ("load_zarr_with_checksums", "zarr_checked", "zarr_read", zper_gb),
    ]
    lines = []
    for name, value, baseline, scale in pairs:
        lines.append(bench_line(f"{name}_user_cpu", cpu[value] * scale, cpu[baseline] * scale))
        lines.append(bench_line(f"{name}_wall", wall[value] * scale, wall[baseline] * scale))
    lines.append(bench_line("read_hdf5_fletcher32_chunked_wall", fletcher * 1e9 / fbytes, contiguous * 1e9 / fbytes))
    return lines


def record(lines: list[str], notes: list[str]) -> None:
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
    if SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n"
    head, _, tail = text.partition(SECTION)
    following = tail.find("\n## ")
    section, rest = (tail, "") if following < 0 else (tail[:following], tail[following:])
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = [f"\n### bench_cache.py ({stamp}, {platform.machine()}, {os.cpu_count()} CPU cores)\n", "```", *lines,
             "```", *notes, ""]
    RESULTS.write_text(head + SECTION + section.rstrip("\n") + "\n" + "\n".join(block) + rest, encoding="utf-8")
    log(f"recorded in {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="0.25 GB instead of 1 GB, 4 repeats")
    parser.add_argument("--gb", type=float, default=None, help="GB of HDF5 features to build (Zarr: half)")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats (best of)")
    parser.add_argument("--record", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    parser.add_argument("--workdir", type=Path, help="where to build the caches (default: a temporary folder, removed)")
    args = parser.parse_args()
    gb = args.gb or (0.25 if args.quick else 1.0)
    repeats = args.repeats or (4 if args.quick else 9)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_cache-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        tic = time.perf_counter()
        lines = measure(work, gb, repeats)
        log(f"done in {time.perf_counter() - tic:.0f} s")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.record:
        notes = [f"- {gb:g} GB of float16 {DIM}-d features (Zarr {gb / 2:g} GB), page cache warm, best of {repeats}."]
        record(lines, notes)


if __name__ == "__main__":
    main()
