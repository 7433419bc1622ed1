"""Tune the classical nucleus segmenter on CRCHistoPhenotypes img1-img50; report img51-img100 held out.

Reads ``../shared/data/crc_colon`` (research use only; never copied into the repository). Detection is
scored at a 6-px radius with one-to-one Hungarian matching (:mod:`balnmp_cache.nuclei.detection`),
pooled over images, at the dataset's 0.55 µm/px.

Search: coordinate descent from the stage's defaults over the grid below, two sweeps: each parameter
in turn is set to the grid value with the best F1 on img1-img50, the others held. Only then is
img51-img100 segmented, once, with the chosen settings (and at 8 px for comparison). The result is
printed as ``BENCH`` lines and written to ``benchmarks/out/tune_nuclei_crc.json`` (every trial) and
``benchmarks/tune_nuclei_crc.json`` (the recorded result, without the trials); the chosen settings are
the defaults of ``NucleiConfig`` and ``ClassicalParams``.

    .venv/bin/python benchmarks/tune_nuclei_crc.py [--quick]   # --quick: every other tuning image, one sweep
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from balnmp_cache.nuclei.classical import ClassicalParams, segment_patch  # noqa: E402
from balnmp_cache.nuclei.detection import (  # noqa: E402
    CRC_MPP,
    DetectionScore,
    centroids,
    load_crc_image,
    pooled,
    score_detections,
)

SHARED = Path(os.environ.get("BALNMP_SHARED_DATA", ROOT.parent / "shared" / "data"))
CRC = SHARED / "crc_colon"
OUT = ROOT / "benchmarks" / "out"
RECORD = ROOT / "benchmarks" / "tune_nuclei_crc.json"
TUNE, HELD_OUT = range(1, 51), range(51, 101)
GRID: dict[str, tuple[float, ...]] = {
    "otsu_scale": (1.0, 1.1, 1.2, 1.3, 1.4),
    "smooth_sigma_um": (0.0, 0.275, 0.55),
    "dab_max_od": (0.03, 0.04, 0.05, 0.07, 1.0),
    "seed_sigma_um": (0.275, 0.55, 0.825),
    "seed_h_um": (0.055, 0.11, 0.165, 0.275, 0.55),
    "min_area_um2": (6.0, 9.0, 12.0, 15.0),
}


def _score_one(args: tuple[int, ClassicalParams, tuple[float, ...]]) -> list[DetectionScore]:
    index, params, radii = args
    rgb, truth = load_crc_image(CRC, index)
    predicted = centroids(segment_patch(rgb, params, px_um=CRC_MPP))
    return [score_detections(predicted, truth, radius_px=r) for r in radii]


def evaluate(
    pool: ProcessPoolExecutor, params: ClassicalParams, images: range, radii: tuple[float, ...] = (6.0,)
) -> list[DetectionScore]:
    """Pooled scores of ``params`` over ``images``, one per radius."""
    per_image = list(pool.map(_score_one, [(i, params, radii) for i in images]))
    return [pooled(scores[k] for scores in per_image) for k in range(len(radii))]


def tune(pool: ProcessPoolExecutor, images: range, sweeps: int) -> tuple[ClassicalParams, float, list[dict]]:
    """Coordinate descent over :data:`GRID`; the best settings, their F1 and every evaluation."""
    best = ClassicalParams()
    best_f1 = evaluate(pool, best, images)[0].f1
    trials = [{"params": asdict(best), "f1": best_f1}]
    for _ in range(sweeps):
        for name, values in GRID.items():
            for value in values:
                if value == getattr(best, name):
                    continue
                candidate = replace(best, **{name: value})
                f1 = evaluate(pool, candidate, images)[0].f1
                trials.append({"params": asdict(candidate), "f1": f1})
                print(f"  {name}={value}: F1 {f1:.4f} (best {best_f1:.4f})", flush=True)
                if f1 > best_f1:
                    best, best_f1 = candidate, f1
    return best, best_f1, trials


def _summary(score: DetectionScore) -> dict[str, float]:
    return {"precision": score.precision, "recall": score.recall, "f1": score.f1, "tp": score.tp,
            "fp": score.fp, "fn": score.fn}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every other tuning image, one sweep")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not (CRC / "images").is_dir():
        print(f"SKIP: {CRC} is absent")
        return 0
    images = range(1, 51, 2) if args.quick else TUNE
    started = time.time()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        params, _, trials = tune(pool, images, sweeps=1 if args.quick else 2)
        tuned = evaluate(pool, params, TUNE, radii=(6.0, 8.0))
        held = evaluate(pool, params, HELD_OUT, radii=(6.0, 8.0))
    result = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "seconds": time.time() - started,
        "mpp": CRC_MPP, "matching": "one-to-one Hungarian within the radius", "params": asdict(params),
        "tuning_images": f"img{images.start}-img{images.stop - 1} step {images.step}",
        "tune_6px": _summary(tuned[0]), "tune_8px": _summary(tuned[1]),
        "held_out_6px": _summary(held[0]), "held_out_8px": _summary(held[1]), "trials": trials,
    }  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "tune_nuclei_crc.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if not args.quick:  # the recorded figure (no trials), checked by tests/nuclei/test_detection.py
        recorded = {k: v for k, v in result.items() if k != "trials"}
        RECORD.write_text(json.dumps(recorded, indent=2) + "\n", encoding="utf-8")
    print("chosen:", json.dumps(asdict(params)))
    for name, score in (("tune_6px", tuned[0]), ("held_out_6px", held[0]), ("held_out_8px", held[1])):
        print(f"BENCH name=crc_{name} P={score.precision:.3f} R={score.recall:.3f} F1={score.f1:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
