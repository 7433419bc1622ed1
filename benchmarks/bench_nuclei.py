"""Nucleus-stage throughput: ours against a plain per-patch scikit-image loop, measured in the same run.

Inputs: 256-px crops of the real H&E images of CRCHistoPhenotypes (``../shared/data/crc_colon``, four
crops per 500-px image) when present, else generated H&E-like patches; the same patches and the same
settings (the stage's defaults at 0.5 µm/px) for both sides.

- ``segment_measure``: :class:`~balnmp_cache.nuclei.classical.ClassicalSegmenter` + ``measure_batch`` (the
  stage's compute path) in one process, against the **baseline**, a per-patch loop written the way one
  writes it with scikit-image: ``rgb2hed``, ``threshold_otsu``, ``binary_fill_holes``,
  ``remove_small_objects``, ``distance_transform_edt``, ``h_maxima``, ``watershed``, then ``regionprops``
  (area, axes, orientation, eccentricity, solidity, mean intensity, ``perimeter_crofton``) and, per
  region, a ``scipy.spatial.ConvexHull`` for the circumference and rotating calipers for the rectangle.
  Both find the same nuclei to within a fraction of a percent (the counts are printed).
- ``stage_2_shards``: ``balnmp-cache nuclei --shard 1/2`` and ``--shard 2/2`` run at once on JPEG slides
  tiled from the same patches (reading, tissue grid, segmentation, Parquet tables, manifest, start-up
  included): patches per second of the two together, the figure that scales to BCNB.

Each figure prints as ``BENCH name=<name> value=<v> unit=<u> baseline=<b> ratio=<r>``. Every rate is given
twice: per wall-clock second, and per CPU second of the processes doing the work (``*_cpu``: patches per
CPU second; x 2 it is the throughput of an otherwise idle 2-core machine, which a machine shared with
other jobs cannot show on the wall clock). ``--quick`` uses fewer patches.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from balnmp_cache.nuclei.classical import ClassicalParams, ClassicalSegmenter  # noqa: E402
from balnmp_cache.nuclei.measure import measure_batch  # noqa: E402

SHARED = Path(os.environ.get("BALNMP_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "benchmarks" / "out" / "nuclei"
PX_UM = 0.5
PATCH = 256


def bench_line(name: str, value: float, unit: str, baseline: float) -> str:
    ratio = value / baseline if baseline else float("nan")
    return f"BENCH name={name} value={value:.4g} unit={unit} baseline={baseline:.4g} ratio={ratio:.3g}"


def load_patches(count: int) -> tuple[np.ndarray, str]:
    """(count, 256, 256, 3) uint8 crops of CRCHistoPhenotypes (or generated) and where they came from."""
    from PIL import Image

    images = sorted((SHARED / "crc_colon" / "images").glob("img*.bmp"), key=lambda p: int(p.stem[3:]))
    patches = []
    for path in images:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"))
        patches += [rgb[y : y + PATCH, x : x + PATCH] for y in (0, 244) for x in (0, 244)]
        if len(patches) >= count:
            return np.stack(patches[:count]), "CRCHistoPhenotypes crops"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:PATCH, 0:PATCH]
    while len(patches) < count:
        rgb = np.empty((PATCH, PATCH, 3), np.float32)
        rgb[...] = (233, 170, 200)
        rgb += rng.normal(0, 6, (PATCH, PATCH, 1))
        for cx, cy, r in zip(rng.uniform(0, PATCH, 70), rng.uniform(0, PATCH, 70), rng.uniform(4, 9, 70), strict=True):
            rgb[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = (105, 60, 150)
        patches.append(np.clip(rgb, 0, 255).astype(np.uint8))
    return np.stack(patches[:count]), "generated H&E-like patches"


def ours(patches: np.ndarray, params: ClassicalParams, batch: int = 32) -> int:
    segmenter = ClassicalSegmenter(params)
    total = 0
    for start in range(0, len(patches), batch):
        chunk = patches[start : start + batch]
        measured = measure_batch(chunk, segmenter.segment(chunk, px_um=PX_UM), px_um=PX_UM, min_patch_nuclei=3)
        total += len(measured.nuclei["patch"])
    return total


def _calipers(points: np.ndarray) -> tuple[float, float]:
    """Hull perimeter and smallest (extent + 1)² rectangle of one region's pixel centres (x, y)."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(points)
    except (QhullError, ValueError):
        return 2 * float(np.ptp(points, axis=0).sum()) + math.pi, float(np.prod(np.ptp(points, axis=0) + 1))
    vertices = points[hull.vertices]
    edges = np.roll(vertices, -1, axis=0) - vertices
    units = edges / np.hypot(edges[:, 0], edges[:, 1])[:, None]
    along, across = units @ vertices.T, np.column_stack([-units[:, 1], units[:, 0]]) @ vertices.T
    area = ((np.ptp(along, axis=1) + 1) * (np.ptp(across, axis=1) + 1)).min()
    return float(hull.area) + math.pi, float(area)


def baseline_patch(rgb: np.ndarray, p: ClassicalParams) -> list[dict[str, float]]:
    """The same segmentation and measurements, one scikit-image call after another."""
    from scipy import ndimage as ndi
    from skimage import color, filters, measure, morphology, segmentation

    hed = color.rgb2hed(rgb)
    hema, dab = np.maximum(hed[..., 0], 0), np.maximum(hed[..., 2], 0)
    mask = (hema > max(p.threshold_od, p.otsu_scale * filters.threshold_otsu(hema))) & (dab < p.dab_max_od)
    mask = ndi.binary_fill_holes(mask)
    mask = morphology.remove_small_objects(mask, max_size=math.ceil(p.min_area_um2 / PX_UM**2) - 1)
    if not mask.any():
        return []
    distance = ndi.gaussian_filter(ndi.distance_transform_edt(mask), p.seed_sigma_um / PX_UM) * mask
    seeds = measure.label(morphology.h_maxima(distance, p.seed_h_um / PX_UM) & mask, connectivity=2)
    labels = segmentation.watershed(-distance, seeds, mask=mask)
    rows = []
    for region in measure.regionprops(labels, intensity_image=hema):
        area_um2 = region.area * PX_UM**2
        if not p.min_area_um2 <= area_um2 <= p.max_area_um2:
            continue
        circumference, rectangle = _calipers(region.coords[:, ::-1].astype(np.float64))
        perimeter = measure.perimeter_crofton(region.image, 4)
        rows.append({"area": area_um2, "major": region.axis_major_length * PX_UM,
                     "minor": region.axis_minor_length * PX_UM,
                     "orientation": math.degrees(region.orientation) % 180, "eccentricity": region.eccentricity,
                     "solidity": region.solidity, "hematoxylin": region.intensity_mean, "perimeter": perimeter * PX_UM,
                     "circumference": circumference * PX_UM, "circularity": 4 * math.pi * region.area / perimeter**2,
                     "rectangularity": region.area / rectangle})  # fmt: skip
    return rows


def _write_slides(patches: np.ndarray, folder: Path, per_side: int = 4) -> int:
    """JPEG slides of per_side x per_side patches on a glass margin; returns the number of patches tiled."""
    from PIL import Image

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    per_slide = per_side * per_side
    for k in range(len(patches) // per_slide):
        grid = patches[k * per_slide : (k + 1) * per_slide].reshape(per_side, per_side, PATCH, PATCH, 3)
        Image.fromarray(grid.transpose(0, 2, 1, 3, 4).reshape(per_side * PATCH, per_side * PATCH, 3)).save(
            folder / f"s{k:03d}.jpg", quality=92
        )
    return (len(patches) // per_slide) * per_slide


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stage_two_shards(patches: np.ndarray) -> tuple[float, float, int]:
    """Wall and CPU seconds of two concurrent ``nuclei`` shard processes over slides tiled from ``patches``."""
    slides, out = OUT / "slides", OUT / "run"
    n = _write_slides(patches, slides)
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "balnmp_cache.cli", "nuclei", str(slides), "--out", str(out), "--slide-mpp",
               str(PX_UM), "--no-bags", "--min-tissue", "0.3", "--num-workers", "1"]  # fmt: skip
    start, cpu = time.perf_counter(), _children_cpu()
    logs = [(out.parent / f"shard{i}.log").open("w") for i in (0, 1)]  # the stage's log lines, kept aside
    jobs = [subprocess.Popen([*command, "--shard", f"{i}/2"], env=env, stdout=subprocess.DEVNULL, stderr=logs[i])
            for i in (0, 1)]  # fmt: skip
    codes = [job.wait() for job in jobs]
    for log in logs:
        log.close()
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if any(codes):
        raise RuntimeError(f"nuclei shards exited with {codes}; see {out.parent}/shard*.log")
    return seconds, cpu, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer patches")
    args = parser.parse_args()
    params = ClassicalParams()
    patches, source = load_patches(64 if args.quick else 256)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# {len(patches)} patches: {source}; {os.cpu_count()} CPU cores; {stamp}")
    ours(patches[:4], params)  # warm-up: imports, lookup tables
    baseline_patch(patches[0], params)
    start, cpu = time.perf_counter(), time.process_time()
    n_ours = ours(patches, params)
    ours_rate, ours_cpu = len(patches) / (time.perf_counter() - start), len(patches) / (time.process_time() - cpu)
    start, cpu = time.perf_counter(), time.process_time()
    n_base = sum(len(baseline_patch(p, params)) for p in patches)
    base_rate, base_cpu = len(patches) / (time.perf_counter() - start), len(patches) / (time.process_time() - cpu)
    print(f"# nuclei found: ours {n_ours}, baseline {n_base}; load average {os.getloadavg()[0]:.1f}")
    print(bench_line("nuclei_segment_measure", ours_rate, "patches/s", base_rate))
    print(bench_line("nuclei_segment_measure_cpu", ours_cpu, "patches/cpu-s", base_cpu))
    seconds, cpu_seconds, n = stage_two_shards(np.concatenate([patches] * (2 if args.quick else 4)))
    print(bench_line("nuclei_stage_2_shards", n / seconds, "patches/s", base_rate))
    print(bench_line("nuclei_stage_2_shards_cpu", n / cpu_seconds, "patches/cpu-s", base_cpu))
    idle = 76_600 / (2 * n / cpu_seconds) / 60
    print(f"# {n} patches; load average {os.getloadavg()[0]:.1f}; BCNB's 76,600 patches at the wall rate: "
          f"{76_600 / (n / seconds) / 60:.1f} min, on an idle 2-core machine: {idle:.1f} min")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
