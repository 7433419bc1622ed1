"""Heatmap cost on a 100,000-patch slide: the patch-grid renderer against a CLAM-style per-pixel canvas.

A synthetic slide of 400 x 250 patches (100,000) is written as a pyramidal TIFF (deflate tiles, levels at
downsample 1, 4, 16, 64, 256) twice: with 64-px patches (25,600 x 16,000 px, 0.41 Gpx) and with 256-px
patches (102,400 x 64,000 px, 6.55 Gpx). Each measurement runs in a fresh process, after a warm-up on a tiny
input (imports, fonts, colormaps), and reports its wall time and its peak resident memory (VmHWM, reset before
the measurement) above what the process held when it started.

- ``ours``: ``balnmp_cache.heatmap.outputs.draw_slide`` on scores already computed: both maps (blended and
  RGBA, 1024 px) over the slide's thumbnail, the top/bottom galleries read back from the slide, the scores
  table and the QuPath GeoJSON of all 100,000 patches.
- ``score``: ``score_slide`` with an (untrained) official head on 100,000 x 1,280 float16 features.
- ``clam``: what CLAM's ``visHeatmap`` does, at a pyramid level: a float64 score canvas and a uint16 counter
  of the level's size, a Python loop adding each patch's score to its block, the division, the colormap on
  the whole canvas, the level read back and blended, one PNG. Measured at downsample 64 and 16 of the
  6.55 Gpx slide and extrapolated in proportion to the pixels to level 0 (memory and time are linear in the
  canvas's pixels: the loop's cost is per patch, everything else per pixel).

    .venv/bin/python benchmarks/bench_heatmap.py [--quick] [--out benchmarks/out/heatmap]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import zlib
from datetime import date
from pathlib import Path

import numpy as np

COLUMNS, ROWS = 400, 250  # 100,000 patches
_PALETTE = np.array([[236, 200, 222], [200, 140, 190], [150, 90, 160], [110, 60, 140], [240, 238, 242]], np.uint8)


def _vm(key: str) -> float:
    """VmRSS or VmHWM of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return float("nan")


def _start_measuring() -> float:
    """Reset the peak (Linux: ``5 > /proc/self/clear_refs``) and return the resident memory now, in MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _vm("VmRSS")


def _cells(columns: int, rows: int) -> np.ndarray:
    """(rows, columns) palette index of every patch cell: blobs of 'tissue' on glass."""
    yy, xx = np.mgrid[0:rows, 0:columns]
    blob = np.sin(xx / 23.0) * np.cos(yy / 17.0) + 0.4 * np.sin((xx + yy) / 9.0)
    return np.digitize(blob, [-0.6, -0.1, 0.3, 0.8]).astype(np.int64) % len(_PALETTE)


def _tiles(level_px: tuple[int, int], cell_px: float, cells: np.ndarray, cache: dict) -> object:
    """Deflate-compressed 256-px tiles of one level, row by row (equal tiles are encoded once)."""
    width, height = level_px
    for ty in range(0, height, 256):
        for tx in range(0, width, 256):
            xs = np.minimum(((tx + np.arange(256)) / cell_px).astype(np.int64), cells.shape[1] - 1)
            ys = np.minimum(((ty + np.arange(256)) / cell_px).astype(np.int64), cells.shape[0] - 1)
            index = cells[np.ix_(ys, xs)]
            key = index.tobytes() if cell_px < 256 else int(index[0, 0])
            if key not in cache:
                cache[key] = zlib.compress(np.ascontiguousarray(_PALETTE[index]).tobytes(), 1)
            yield cache[key]


def write_slide(path: Path, patch_px: int, columns: int, rows: int) -> Path:
    """The synthetic slide: one palette colour per patch cell, levels at downsample 1, 4, 16, 64, 256."""
    import tifffile

    if path.is_file():
        return path
    cells = _cells(columns, rows)
    width, height = columns * patch_px, rows * patch_px
    tmp = path.with_suffix(".tmp.tiff")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for i, downsample in enumerate((1, 4, 16, 64, 256)):
            level = (width // downsample, height // downsample)
            if min(level) < 64:
                break
            cache: dict = {}
            tif.write(_tiles(level, patch_px / downsample, cells, cache), shape=(level[1], level[0], 3), dtype="uint8",
                      tile=(256, 256), compression="zlib", photometric="rgb", subfiletype=1 if i else 0,
                      resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    tmp.rename(path)
    return path


def _scores(patch_px: int, columns: int, rows: int, slide: Path) -> object:
    from balnmp_cache.heatmap.scoring import SlideScores, attention_stats

    rng = np.random.default_rng(0)
    xs, ys = np.meshgrid(np.arange(columns), np.arange(rows))
    coords = np.stack([xs.ravel() * patch_px, ys.ravel() * patch_px], axis=1).astype(np.int64)
    n = len(coords)
    logits = (rng.standard_normal(n) + 0.02 * xs.ravel()).astype(np.float32)
    weights = np.exp(logits - logits.max())
    attrs = {"source_path": str(slide), "slide_width": columns * patch_px, "slide_height": rows * patch_px,
             "patch_level0_px": patch_px, "coords_frame": "level0"}
    keys = np.array([f"p_{x}_{y}" for x, y in coords.tolist()], dtype=object)
    scores = SlideScores("bench", "bench", attrs, coords, np.zeros(n, np.int32), keys, logits,
                         (weights / weights.sum()).astype(np.float32), rng.standard_normal(n).astype(np.float32),
                         "attention")
    scores.stats = attention_stats(scores, flat_ratio=1.5)
    return scores


def child_ours(patch_px: int, columns: int, rows: int, slide: Path, out: Path) -> dict:
    from balnmp_cache.heatmap.outputs import DrawPlan, SlideLabel, draw_slide
    from balnmp_cache.heatmap.render import Scale

    plan = DrawPlan(Scale("rank", "magma", "attention"), Scale("two_slope", "RdBu_r", "log-odds", -3, 3, 0),
                    "attention", 0.55, 1024, 8, 160, True, 1.5, (), "bench")
    label = SlideLabel("N(+)", "test", 0.9, "N(+)")
    draw_slide(_scores(patch_px, 10, 10, slide), plan, label, out / "warm-up", key="bench")  # imports, fonts, LUTs
    scores = _scores(patch_px, columns, rows, slide)
    base = _start_measuring()
    started = time.perf_counter()
    draw_slide(scores, plan, label, out / f"ours-{patch_px}", key="bench")
    return {"seconds": time.perf_counter() - started, "peak_mb": _vm("VmHWM") - base, "process_mb": _vm("VmHWM")}


def child_score(columns: int, rows: int) -> dict:
    import pandas as pd
    import torch

    from balnmp_cache.cache.schema import SlideFeatures
    from balnmp_cache.heatmap.scoring import RunModel, score_slide
    from balnmp_cache.mil import create_head
    from balnmp_cache.runs import Checkpoint, RunRecord

    torch.set_num_threads(2)
    n, dim = columns * rows, 1280
    head = create_head("balnmp", in_dim=dim, n_classes=2).eval()
    ckpt = Checkpoint("balnmp", {}, dim, 2, 0, ("N0", "N(+)"), 0, "N0 vs N(+)", {}, None, 10)
    model = RunModel(Path("."), RunRecord(), ckpt, head, torch.device("cpu"), 1, pd.DataFrame(), "")
    features = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float16)
    sf = SlideFeatures("bench", features, np.zeros((n, 2), np.int64), np.zeros(n, np.int32),
                       np.array([""] * n, dtype=object), {})
    score_slide(model, SlideFeatures("w", features[:10], sf.coords[:10], sf.region_id[:10], sf.patch_key[:10], {}),
                None, score="auto", patient_id="w")  # warm-up
    base = _start_measuring()
    started = time.perf_counter()
    score_slide(model, sf, None, score="auto", patient_id="bench")
    return {"seconds": time.perf_counter() - started, "peak_mb": _vm("VmHWM") - base, "process_mb": _vm("VmHWM")}


def child_clam(patch_px: int, columns: int, rows: int, slide: Path, out: Path, downsample: int) -> dict:
    """CLAM's visHeatmap at one pyramid level (see the module docstring)."""
    from matplotlib import colormaps
    from PIL import Image

    from balnmp_cache.slides import open_slide

    scores = _scores(patch_px, columns, rows, slide)
    reader = open_slide(slide)
    level = int(np.argmin([abs(d - downsample) for d in reader.level_downsamples]))
    width, height = reader.level_dimensions[level]
    reader.read_region((0, 0), level, (64, 64))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(out / "warm-up.png")
    colormaps["jet"](np.zeros(4))
    base = _start_measuring()
    started = time.perf_counter()
    overlay = np.full((height, width), 0).astype(float)  # as CLAM: an int64 canvas first, then a float64 copy
    counter = np.full((height, width), 0).astype(np.uint16)
    side = int(np.ceil(patch_px / downsample))
    for (x, y), value in zip((scores.coords / downsample).astype(int).tolist(), scores.score.tolist(), strict=True):
        overlay[y : y + side, x : x + side] += value
        counter[y : y + side, x : x + side] += 1
    covered = counter > 0
    overlay[covered] = overlay[covered] / counter[covered]
    low, high = overlay[covered].min(), overlay[covered].max()
    colour = colormaps["jet"]((overlay - low) / max(high - low, 1e-12))[..., :3]  # float64 RGBA of the canvas
    region = reader.read_region((0, 0), level, (width, height)).astype(float) / 255.0
    blended = np.where(covered[..., None], 0.4 * colour + 0.6 * region, region)
    Image.fromarray((blended * 255).astype(np.uint8)).save(out / f"clam-{patch_px}-{downsample}.png", compress_level=3)
    return {"seconds": time.perf_counter() - started, "peak_mb": _vm("VmHWM") - base, "process_mb": _vm("VmHWM"),
            "canvas_px": width * height, "downsample": float(reader.level_downsamples[level])}


def _child(args: list[str]) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if result.returncode:
        raise RuntimeError(f"child {args} failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    import os

    return f"{model}, {os.cpu_count()} CPU threads visible, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 x 100 patches (10,000) instead of 400 x 250")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/heatmap"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "score":
            print(json.dumps(child_score(int(rest[0]), int(rest[1]))))
        elif kind == "ours":
            print(json.dumps(child_ours(int(rest[0]), int(rest[1]), int(rest[2]), Path(rest[3]), Path(rest[4]))))
        else:
            print(json.dumps(child_clam(int(rest[0]), int(rest[1]), int(rest[2]), Path(rest[3]), Path(rest[4]),
                                        int(rest[5]))))
        return
    columns, rows = (100, 100) if args.quick else (COLUMNS, ROWS)
    args.out.mkdir(parents=True, exist_ok=True)
    slides = {px: write_slide(args.out / f"slide-{columns}x{rows}-{px}.tiff", px, columns, rows) for px in (64, 256)}
    shape = [str(columns), str(rows)]
    rows_out = []
    for px, slide in slides.items():
        gpx = columns * rows * px * px / 1e9
        result = _child(["ours", str(px), *shape, str(slide), str(args.out)])
        rows_out.append((f"patch grid (ours), {px}-px patches, {gpx:.2f} Gpx slide", result))
    rows_out.append(("scoring: official head, 1,280-d float16 features", _child(["score", *shape])))
    coarse, fine = (_child(["clam", "256", *shape, str(slides[256]), str(args.out), str(d)]) for d in (64, 16))
    for result in (coarse, fine):
        size = f"{result['canvas_px'] / 1e6:.1f} Mpx"
        rows_out.append((f"CLAM-style canvas at downsample {result['downsample']:g} ({size})", result))
    level0 = columns * rows * 256 * 256
    per_px_mb = fine["peak_mb"] / fine["canvas_px"]
    per_px_s = (fine["seconds"] - coarse["seconds"]) / (fine["canvas_px"] - coarse["canvas_px"])
    extrapolated = {"seconds": coarse["seconds"] + per_px_s * (level0 - coarse["canvas_px"]),
                    "peak_mb": per_px_mb * level0, "process_mb": float("nan")}
    rows_out.append((f"CLAM-style canvas at level 0 ({level0 / 1e9:.2f} Gpx), extrapolated", extrapolated))
    print(f"{date.today().isoformat()}, {_machine()}; {columns * rows:,} patches")
    print("| what | seconds | peak memory of the step (MB) | peak of the whole process (MB) |\n|---|---|---|---|")
    for name, result in rows_out:
        print(f"| {name} | {result['seconds']:.2f} | {result['peak_mb']:,.0f} | {result['process_mb']:,.0f} |")
    ours = rows_out[1][1]
    print(f"BENCH name=heatmap_draw_{columns * rows} value={ours['seconds']:.3g} unit=s "
          f"baseline={extrapolated['seconds']:.4g} ratio={extrapolated['seconds'] / ours['seconds']:.4g}")
    print(f"BENCH name=heatmap_draw_peak_{columns * rows} value={ours['peak_mb']:.4g} unit=MB "
          f"baseline={extrapolated['peak_mb']:.4g} ratio={ours['peak_mb'] / extrapolated['peak_mb']:.3g}")


if __name__ == "__main__":
    main()
