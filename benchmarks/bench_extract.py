"""Stage-1 throughput: our extractor against a CLAM-style baseline measured in the same run.

Inputs:
  * ``../shared/data/wsi/aperio_svs/CMU-1-Small-Region.svs`` (real, JPEG SVS; skipped when absent);
  * a generated 16k x 16k JPEG-tiled pyramidal TIFF with an annotated region (written once under
    ``benchmarks/out/``).

Baseline — what CLAM's ``extract_features_fp.py`` does: an OpenSlide ``read_region`` per patch
inside a torch ``DataLoader`` (one worker per core), PIL -> torchvision ``Resize(224)`` /
``ToTensor`` / ``Normalize`` per patch, fp32, the same encoder and batch size, on the same patch
coordinates that our tiler produced. Ours: ``balnmp-cache extract`` end to end (tiling, filter,
batched grid-aligned reads on a reader thread, channels_last encode under the default precision —
bf16 where the hardware computes it natively — atomic HDF5 write, manifest); where that default is
not fp32, an fp32 run of ours is measured too (``extract_16k_tiff_fp32``).

Each figure prints as ``BENCH name=<name> value=<v> unit=<u> baseline=<b> ratio=<r>``; the ratio is
what to compare across machines. ``--quick`` finishes in about two minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BALNMP_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "benchmarks" / "out"
SIDE = 16384
TILE = 256


def bench_line(name: str, value: float, unit: str, baseline: float) -> str:
    ratio = value / baseline if baseline else float("nan")
    return f"BENCH name={name} value={value:.4g} unit={unit} baseline={baseline:.4g} ratio={ratio:.3g}"


# -- the generated slide ----------------------------------------------------------------------------
def _tissue_tiles(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """H&E-like 256-px tiles: pink stroma with purple nuclei, cheap to make."""
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    tiles = []
    for _ in range(count):
        img = np.empty((TILE, TILE, 3), np.float32)
        img[...] = (233, 170, 200)
        img += rng.normal(0, 8, (TILE, TILE, 1))
        for cx, cy, r in zip(rng.uniform(0, TILE, 60), rng.uniform(0, TILE, 60), rng.uniform(3, 7, 60), strict=True):
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            img[inside] = (110, 60, 150)
        tiles.append(np.clip(img, 0, 255).astype(np.uint8))
    return tiles


def make_slide(path: Path) -> Path:
    """16k x 16k pyramidal TIFF, JPEG tiles of 256, levels 1/4/16 as separate pages, MPP 0.5."""
    import tifffile

    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    tiles = _tissue_tiles(rng, 32)
    tmp = path.with_suffix(".tmp.tiff")
    with tifffile.TiffWriter(tmp, bigtiff=True) as tif:
        for level, factor in enumerate((1, 4, 16)):
            side = SIDE // factor
            n = side // TILE
            order = rng.integers(0, len(tiles), n * n)

            def tile_iter(order=order):
                for k in order:
                    yield tiles[int(k)]

            tif.write(
                tile_iter(),
                shape=(side, side, 3),
                dtype=np.uint8,
                tile=(TILE, TILE),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": 90},
                resolution=(1e4 / (0.5 * factor), 1e4 / (0.5 * factor)),
                resolutionunit="CENTIMETER",
                subfiletype=0 if level == 0 else 1,
                metadata=None,
            )
    tmp.replace(path)
    return path


def write_annotation(slide: Path, n_side: tuple[int, int]) -> Path:
    """A rectangle that holds n_side[0] x n_side[1] whole patches, away from the border."""
    x0 = y0 = 2048
    x1, y1 = x0 + n_side[0] * TILE, y0 + n_side[1] * TILE
    ann = slide.with_suffix(".json")
    rectangle = {"name": "bench", "vertices": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]}
    ann.write_text(json.dumps({"positive": [rectangle], "negative": []}))
    return ann


# -- ours ---------------------------------------------------------------------------------------------
def run_ours(
    slides: list[Path], encoder: str, batch_size: int, workers: int, device: str, precision: str = "auto"
) -> tuple[float, list[np.ndarray], dict]:
    """Patches/s of ``balnmp-cache extract`` over ``slides``, from nothing (encoder build included) to files."""
    from balnmp_cache.cache import read_slide
    from balnmp_cache.extract import ExtractConfig, run_extract

    out = Path(tempfile.mkdtemp(prefix="bench-extract-"))
    try:
        config = ExtractConfig(
            sources=slides, out=out, encoder=encoder, weights=_weights(encoder),
            batch_size=batch_size, num_workers=workers, device=device, precision=precision,
        )
        t0 = time.perf_counter()
        result = run_extract(config)
        seconds = time.perf_counter() - t0
        coords = [read_slide(result.cache_dir / f"{s.stem}.h5").coords for s in slides]
        attrs = read_slide(result.cache_dir / f"{slides[0].stem}.h5").attrs
        split = {
            "precision": attrs["precision"], "setup_s": round(result.setup_seconds, 2),
            "read_s": round(result.read_seconds, 2), "encode_s": round(result.compute_seconds, 2),
            "wall_s": round(seconds, 2),
        }
        return sum(len(c) for c in coords) / seconds, coords, split
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _weights(encoder: str) -> str:
    # Only EfficientNet-Lite0 has ImageNet weights offline here; speed does not depend on the values.
    return "imagenet" if encoder == "efficientnet_lite0" else "random"


# -- the CLAM-style baseline ------------------------------------------------------------------------
class _ClamBag:
    """CLAM's Whole_Slide_Bag_FP: one OpenSlide read_region per patch, PIL transforms per patch."""

    def __init__(self, path: Path, coords: np.ndarray, patch_px: int) -> None:
        from torchvision import transforms

        self.path, self.coords, self.patch_px = str(path), coords, patch_px
        self.wsi = None
        self.transform = transforms.Compose([
            transforms.Resize(224), transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ])

    def __len__(self) -> int:
        return len(self.coords)

    def __getitem__(self, i: int):
        import openslide

        if self.wsi is None:
            self.wsi = openslide.OpenSlide(self.path)
        x, y = (int(v) for v in self.coords[i])
        img = self.wsi.read_region((x, y), 0, (self.patch_px, self.patch_px)).convert("RGB")
        return self.transform(img)


def run_baseline(
    slides: list[Path], coords: list[np.ndarray], encoder: str, batch_size: int, workers: int, device: str
) -> float:
    """Patches/s of the CLAM-style loop: slide after slide, a DataLoader each, encoder build included."""
    import torch
    from torch.utils.data import DataLoader

    from balnmp_cache.encoders import create_encoder

    t0 = time.perf_counter()
    enc = create_encoder(encoder, weights=_weights(encoder), device=device)
    n = 0
    with torch.inference_mode():
        for slide, xy in zip(slides, coords, strict=True):
            loader = DataLoader(_ClamBag(slide, xy, TILE), batch_size=batch_size, num_workers=workers,
                                pin_memory=device == "cuda")
            for batch in loader:
                enc.model(batch.to(device, non_blocking=True)).cpu().numpy()
                n += len(batch)
    return n / (time.perf_counter() - t0)


def forward_only(encoder: str, batch_size: int, device: str, n_batches: int) -> float:
    """The encoder alone on ready device tensors, with our settings (channels_last, autocast where native)."""
    import torch

    from balnmp_cache.extract.config import ExtractConfig
    from balnmp_cache.extract.encode import BatchEncoder

    runner = BatchEncoder.build(ExtractConfig(encoder=encoder, weights=_weights(encoder), device=device))
    patches = np.random.default_rng(0).integers(0, 255, (batch_size, TILE, TILE, 3), dtype=np.uint8)
    with torch.inference_mode():
        x = runner.encoder.preprocess(torch.from_numpy(patches))  # (B, 3, 224, 224) on the device

        def step() -> None:
            if runner.autocast_dtype is not None:
                with torch.autocast(device_type=runner.device, dtype=runner.autocast_dtype):
                    runner.encoder.model(x)
            else:
                runner.encoder.model(x)

        for _ in range(2):
            step()
        if runner.device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n_batches):
            step()
        if runner.device == "cuda":
            torch.cuda.synchronize()
    return n_batches * batch_size / (time.perf_counter() - t0)


def read_only(slide: Path, coords: np.ndarray, workers: int) -> tuple[float, float]:
    """Tiles/s: our batched reader vs OpenSlide one read_region at a time, same coordinates."""
    import openslide

    from balnmp_cache.slides import open_slide

    xys = [tuple(int(v) for v in c) for c in coords]
    with open_slide(slide, num_workers=workers) as reader:
        t0 = time.perf_counter()
        for i in range(0, len(xys), 64):
            reader.read_regions(xys[i : i + 64], 0, (TILE, TILE))
        ours = len(xys) / (time.perf_counter() - t0)
        backend = reader.backend
    wsi = openslide.OpenSlide(str(slide))
    t0 = time.perf_counter()
    for xy in xys:
        np.asarray(wsi.read_region(xy, 0, (TILE, TILE)).convert("RGB"))
    base = len(xys) / (time.perf_counter() - t0)
    print(f"  reader backend: {backend}")
    return ours, base


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small patch counts, about two minutes on 2 CPU cores")
    parser.add_argument("--encoder", default=None,
                        help="encoder for both sides (default: efficientnet_lite0 on the CPU, vgg16_bn on a GPU)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 on the CPU, 256 on a GPU")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="reader threads (ours) / DataLoader workers (baseline)")
    args = parser.parse_args()

    import torch

    from balnmp_cache.hardware import resolve_device

    device = resolve_device(args.device)
    if args.encoder is None:
        args.encoder = "vgg16_bn" if device == "cuda" else "efficientnet_lite0"
    if args.batch_size is None:
        args.batch_size = 256 if device == "cuda" else 32
    machine = torch.cuda.get_device_name(0) if device == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"bench_extract: encoder {args.encoder}, device {device} ({machine}), batch {args.batch_size}, "
          f"workers {args.workers}")
    grid = (12, 16) if args.quick else (48, 48)
    lines = []

    svs = SHARED / "wsi" / "aperio_svs" / "CMU-1-Small-Region.svs"
    if svs.is_file():
        # several copies, as a cohort would have several slides: the reader thread works ahead across slides
        copies = OUT / "cmu1-copies"
        copies.mkdir(parents=True, exist_ok=True)
        slides = []
        for i in range(4 if args.quick else 16):
            link = copies / f"cmu1-{i:02d}.svs"
            if not link.exists():
                link.symlink_to(svs)
            slides.append(link)
        ours, coords, split = run_ours(slides, args.encoder, args.batch_size, args.workers, device)
        base = run_baseline(slides, coords, args.encoder, args.batch_size, args.workers, device)
        print(f"  CMU-1-Small-Region x{len(slides)}: {sum(map(len, coords))} patches; ours {split}")
        lines.append(bench_line("extract_cmu1_small_region", ours, "patches/s", base))
    else:
        print(f"  skipped CMU-1-Small-Region.svs: not found under {SHARED}")

    t0 = time.perf_counter()
    slide = make_slide(OUT / "slide16k.tiff")
    write_annotation(slide, grid)
    print(f"  generated slide ready in {time.perf_counter() - t0:.1f} s: {slide}")
    # on a GPU one 16k slide is under a second of compute: use several copies so fixed costs do not dominate
    copies = 1 if device != "cuda" else (2 if args.quick else 8)
    slides = [slide]
    for i in range(1, copies):
        link = OUT / f"slide16k-{i}.tiff"
        if not link.exists():
            link.symlink_to(slide.name)
        shutil.copy(slide.with_suffix(".json"), link.with_suffix(".json"))
        slides.append(link)
    ours, coords, split = run_ours(slides, args.encoder, args.batch_size, args.workers, device)
    base = run_baseline(slides, coords, args.encoder, args.batch_size, args.workers, device)
    n16 = sum(len(c) for c in coords)
    print(f"  16k slide x{copies}: {n16} patches; ours {split}")
    lines.append(bench_line("extract_16k_tiff", ours, "patches/s", base))
    steady = n16 / max(split["wall_s"] - split["setup_s"], 1e-9)  # end to end once the encoder is built
    if split["precision"] != "fp32":
        ours32, _, split32 = run_ours(slides, args.encoder, args.batch_size, args.workers, device, precision="fp32")
        print(f"  16k slide, --precision fp32: ours {split32}")
        lines.append(bench_line("extract_16k_tiff_fp32", ours32, "patches/s", base))
    fwd = forward_only(args.encoder, args.batch_size, device, n_batches=3 if args.quick else 10)
    lines.append(bench_line("extract_16k_end_to_end_vs_forward_only", steady, "patches/s", fwd))
    read_ours, read_base = read_only(slide, coords[0], args.workers)
    lines.append(bench_line("read_16k_tiff", read_ours, "tiles/s", read_base))
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
