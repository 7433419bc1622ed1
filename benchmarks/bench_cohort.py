"""Stage 1 at cohort scale: many small slides against one big slide of the same patches, and end to end
against the encoder's forward pass alone, each beside its baseline measured in the same run.

Inputs (written once under ``benchmarks/out/``): synthetic H&E-like 256-px JPEG tiles (a pool of 256,
quality 90), laid out as BCNB pre-cut patches ``patches/<pid>/<pid>_0_<x>_<y>.jpg`` with hard links,
so every cohort below reads and decodes real JPEG files:

* ``196x4``: 196 patients of 4 patches, and ``1x784``: one patient of the same 784 patches;
* ``bcnb``: a BCNB-shaped cohort: 1,058 patients whose patch counts are drawn from a lognormal fitted
  to BCNB (median 36, mean 72: mu = ln 36, sigma = sqrt(2 ln 2)), the largest set to BCNB's 2,915;
  ``--patients N`` (``--quick``: 40) keeps a random N of them, the same distribution per patient;
  and ``bcnb_one``: one patient holding all of that cohort's patches.

Encoder: on the CPU, ``resnet18`` (random weights: speed does not depend on the values) at a reduced
input of 112 px (``--input-px``; registered here as ``resnet18_px112``, one function and a decorator),
so the cohort runs in minutes on two cores (``--encoder resnet18``: its registered 224-px input, a forward
pass about four times dearer, against which decoding weighs a quarter as much); on a GPU,
``vgg16_bn --mode flatten`` (25,088-d) at 224 px, batch 256, JPEGs decoded on the GPU. ``run_extract`` end
to end (claims, reads, decode, batches, writer thread, journal), patches/s counted from after the encoder
is built. Forward-only: the same encoder, batch and precision on ready device tensors, in two windows
just before and just after each cohort run (each an eighth of the cohort's batches, at least 60; 20 with
``--quick``), the baseline being their pooled rate, so both sides see the same stretch of machine time.
Runs are interleaved (forward-only, cohort, forward-only, one slide, again) and the best of ``--repeats``
is kept (with its own baseline), because the machine is shared.

Each figure prints as ``BENCH name=<name> value=<v> unit=<u> baseline=<b> ratio=<r>``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_extract import _tissue_tiles, bench_line

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
POOL = 256
BCNB_PATIENTS, BCNB_MEDIAN, BCNB_MEAN, BCNB_MAX = 1058, 36, 72, 2915


def bcnb_counts(n_patients: int, seed: int = 0) -> list[int]:
    """Patch counts per patient from the lognormal fitted to BCNB, the largest set to 2,915."""
    rng = np.random.default_rng(seed)
    sigma = float(np.sqrt(2 * np.log(BCNB_MEAN / BCNB_MEDIAN)))
    counts = np.clip(np.rint(rng.lognormal(np.log(BCNB_MEDIAN), sigma, BCNB_PATIENTS)), 1, BCNB_MAX).astype(int)
    counts[int(np.argmax(counts))] = BCNB_MAX
    if n_patients < BCNB_PATIENTS:
        counts = rng.choice(counts, n_patients, replace=False)
    return [int(c) for c in counts]


def _pool() -> list[Path]:
    from PIL import Image

    folder = OUT / "cohort-pool"
    files = [folder / f"tile{i:03d}.jpg" for i in range(POOL)]
    if all(f.is_file() for f in files):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    for path, tile in zip(files, _tissue_tiles(np.random.default_rng(1), POOL), strict=True):
        Image.fromarray(tile).save(path, quality=90)
    return files


def write_cohort(name: str, counts: list[int]) -> Path:
    """``OUT/cohort-<name>/patches/``: patient i holds ``counts[i]`` hard links into the tile pool."""
    root = OUT / f"cohort-{name}" / "patches"
    stamp = root.parent / f".done-{sum(counts)}-{len(counts)}"
    if stamp.is_file():
        return root
    shutil.rmtree(root.parent, ignore_errors=True)
    pool = _pool()
    k = 0
    for i, n in enumerate(counts):
        pid = f"{i:04d}"
        folder = root / pid
        folder.mkdir(parents=True)
        for j in range(n):
            os.link(pool[k % POOL], folder / f"{pid}_0_{256 * (j % 64)}_{256 * (j // 64)}.jpg")
            k += 1
    stamp.touch()
    return root


def register_small_encoder(input_px: int) -> str:
    """``resnet18`` at ``input_px`` (the trunk as registered, a smaller input): a fast encoder for the CPU."""
    from balnmp_cache.encoders import registry
    from balnmp_cache.encoders.registry import EncoderSpec, register_encoder

    name = f"resnet18_px{input_px}"
    if name not in registry.list_encoders():
        base = registry.get_spec("resnet18")
        spec = EncoderSpec(name=name, input_px=input_px, mean=base.mean, std=base.std, channels=base.channels,
                           flatten_dim=None, modes=("avg", "max"), default_mode="avg",
                           weights_source="random weights only (a benchmark encoder)")

        @register_encoder(spec)
        def small(pretrained: bool):  # type: ignore[no-untyped-def]
            from balnmp_cache.encoders.torchvision_trunks import build_trunk

            return build_trunk("resnet18", pretrained)

    return name


def run_cohort(patches: Path, args: argparse.Namespace) -> dict:
    """One ``run_extract`` over ``patches`` into a fresh cache; patches/s after the encoder is built."""
    from balnmp_cache.extract import ExtractConfig, run_extract

    out = Path(tempfile.mkdtemp(prefix="bench-cohort-"))
    try:
        config = ExtractConfig(sources=[patches], out=out, encoder=args.encoder, mode=args.mode, weights="random",
                               batch_size=args.batch_size, num_workers=args.workers, device=args.device)
        result = run_extract(config)
        assert result.exit_code == 0 and result.n_failed == 0, result.rows[:3]
        times = result.times
        return {
            "rate": result.n_patches / max(result.seconds - result.setup_seconds, 1e-9), "n": result.n_patches,
            "slides": result.n_ok, "batches": result.n_batches, "wall_s": round(result.seconds, 1),
            "setup_s": round(result.setup_seconds, 1), "read_s": round(times.read, 1),
            "decode_s": round(times.decode, 1), "h2d_s": round(times.h2d, 1), "forward_s": round(times.forward, 1),
            "write_s": round(times.write, 1), "loader_wait": round(times.loader_wait, 3),
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def forward_only(args: argparse.Namespace, n_batches: int) -> tuple[int, float]:
    """The encoder alone on ready device tensors (the eval transform done beforehand), with the pipeline's
    settings (channels_last, precision): ``n_batches`` batches after a warm-up, as (patches, seconds)."""
    import torch

    from balnmp_cache.extract import ExtractConfig
    from balnmp_cache.extract.encode import BatchEncoder

    runner = BatchEncoder.build(ExtractConfig(encoder=args.encoder, mode=args.mode, weights="random",
                                              device=args.device))
    patches = np.random.default_rng(0).integers(0, 255, (args.batch_size, 256, 256, 3), dtype=np.uint8)
    with torch.inference_mode():
        x = runner.encoder.preprocess(torch.from_numpy(patches).to(runner.device))  # (B, 3, px, px)
        for i in range(n_batches + 2):  # the first two are a warm-up
            if i == 2:
                if runner.device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            runner._model(x).float().cpu()
    return n_batches * args.batch_size, time.perf_counter() - t0


def _best(runs: list[dict]) -> dict:
    return max(runs, key=lambda r: r["rate"])


def _interleaved(a: Path, b: Path | None, args: argparse.Namespace, *, forward_batches: int = 0) -> tuple[
    dict, dict | None, float
]:
    """Best of ``args.repeats`` rounds of ``a`` and ``b``; with ``forward_batches``, each ``a`` is bracketed by
    two windows of the encoder alone, and its baseline is their pooled rate (patches / seconds of both), so a
    machine that speeds up or slows down during the run weighs on both sides alike."""
    runs_a, runs_b = [], []
    for _ in range(args.repeats):
        before = forward_only(args, forward_batches) if forward_batches else (0, 0.0)
        runs_a.append(run_cohort(a, args))
        if forward_batches:
            after = forward_only(args, forward_batches)
            n, seconds = before[0] + after[0], before[1] + after[1]
            runs_a[-1]["forward_only"] = round(n / seconds, 2)
            runs_a[-1]["forward_only_windows"] = [round(before[0] / before[1], 1), round(after[0] / after[1], 1)]
        if b is not None:
            runs_b.append(run_cohort(b, args))
    best = _best(runs_a)
    return best, _best(runs_b) if runs_b else None, best.get("forward_only", 0.0)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 BCNB-shaped patients, 2 repeats")
    parser.add_argument("--patients", type=int, default=None, help="BCNB-shaped patients (default 1058, quick 40)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--encoder", default=None, help="default: resnet18 at --input-px on the CPU, vgg16_bn on a GPU")
    parser.add_argument("--mode", default=None, help="default: the encoder's (flatten for vgg16_bn on a GPU)")
    parser.add_argument("--input-px", type=int, default=112, help="input side of the CPU's default encoder")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 on the CPU, 256 on a GPU")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repeats, the best kept (default 2)")
    parser.add_argument("--skip-small", action="store_true", help="leave out 196x4 vs 1x784")
    parser.add_argument("--skip-one-slide", action="store_true",
                        help="leave out the BCNB-shaped patches as one slide (only end to end vs forward-only)")
    return parser.parse_args()


def main() -> int:
    args = _parse()
    from balnmp_cache.hardware import resolve_device

    args.device = resolve_device(args.device)
    gpu = args.device == "cuda"
    if args.encoder is None:
        args.encoder = "vgg16_bn" if gpu else register_small_encoder(args.input_px)
        args.mode = args.mode or ("flatten" if gpu else None)
    args.batch_size = args.batch_size or (256 if gpu else 32)
    args.repeats = args.repeats or 2
    patients = args.patients or (40 if args.quick else BCNB_PATIENTS)
    counts = bcnb_counts(patients)
    machine = f"{os.cpu_count()} CPU cores" if not gpu else __import__("torch").cuda.get_device_name(0)
    print(f"bench_cohort: encoder {args.encoder} (mode {args.mode or 'default'}, random weights), device "
          f"{args.device} ({machine}), batch {args.batch_size}, workers {args.workers}, best of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.1f}")
    lines = []
    if not args.skip_small:
        small, big, _ = _interleaved(write_cohort("196x4", [4] * 196), write_cohort("1x784", [784]), args)
        print(f"  196 x 4: {small}\n  1 x 784: {big}")
        lines.append(bench_line("cohort_196x4_vs_1x784", small["rate"], "patches/s", big["rate"]))
    print(f"  BCNB-shaped: {len(counts)} patients, {sum(counts)} patches (median {int(np.median(counts))}, "
          f"mean {np.mean(counts):.1f}, max {max(counts)})")
    one_slide = None if args.skip_one_slide else write_cohort(f"bcnb{len(counts)}-one", [sum(counts)])
    forward_batches = 20 if args.quick else max(60, sum(counts) // args.batch_size // 8)
    cohort, one, fwd = _interleaved(write_cohort(f"bcnb{len(counts)}", counts), one_slide, args,
                                    forward_batches=forward_batches)
    print(f"  BCNB-shaped cohort: {cohort}\n  the same patches as one slide: {one or 'not run'}")
    if one is not None:
        lines.append(bench_line("cohort_bcnb_vs_one_slide", cohort["rate"], "patches/s", one["rate"]))
    lines.append(bench_line("cohort_bcnb_end_to_end_vs_forward_only", cohort["rate"], "patches/s", fwd))
    print(f"  load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
