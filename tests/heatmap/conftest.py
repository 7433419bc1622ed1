"""Fixtures of the heatmap tests: a synthetic study, runs trained on it, and checkerboard slides with known patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from balnmp_cache.heatmap import HeatmapConfig, HeatmapResult, run_heatmap
from balnmp_cache.train import TrainConfig, run_train
from tests.support.synthetic import SyntheticStudy, make_study

DIM = 8
# Odd and even patches are dark and light grey; the slide outside every patch is green, a colour no blend of the
# two greys makes, so a pixel cut by an edge never passes for any of the three.
DARK, LIGHT, GLASS = (30, 30, 30), (225, 225, 225), (128, 200, 60)


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStudy:
    """16 patients, 8-d features, 10..30 patches each."""
    counts = [10 + (7 * i) % 21 for i in range(16)]
    return make_study(tmp_path_factory.mktemp("heatmap-study"), n_patients=16, dim=DIM, n_patches=counts, signal=2.0,
                      seed=5)


def _train(study: SyntheticStudy, out: Path, **overrides: object) -> Path:
    values: dict[str, object] = {
        "cache": study.cache_dir, "cohort": study.cohort_csv, "out": out, "epochs": 3, "patience": 3, "lr": 2e-3,
        "batch_bags": 16, "threads": 1, "device": "cpu",
    }  # fmt: skip
    values.update(overrides)
    return run_train(TrainConfig(**values)).run_dir


@pytest.fixture(scope="session")
def runs(study: SyntheticStudy, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three runs on the study: the official head image-only, gated ABMIL with clinical data, clinical-only."""
    root = tmp_path_factory.mktemp("heatmap-runs")
    return {
        "balnmp": _train(study, root / "balnmp", head="balnmp", clinical=False),
        "gated_clinical": _train(study, root / "gated_clinical", head="gated_abmil", clinical=True),
        "clinical_only": _train(study, root / "clinical_only", head="clinical_only", clinical=True),
    }


SLIDES = ["1", "2", "3", "4"]


def heatmap_config(run_dir: Path, out: Path, **overrides: object) -> HeatmapConfig:
    """A quick heatmap configuration: small maps and galleries, on the CPU."""
    values: dict[str, object] = {"run_dir": run_dir, "out": out, "device": "cpu", "top_k": 3, "gallery_px": 32,
                                 "canvas_px": 128}
    values.update(overrides)
    return HeatmapConfig(**values)


@pytest.fixture(scope="session")
def drawn(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> HeatmapResult:
    """The heatmaps of four slides of the balnmp run, in ``<tmp>/heatmaps/balnmp``."""
    return run_heatmap(heatmap_config(runs["balnmp"], tmp_path_factory.mktemp("heatmaps") / "balnmp", slides=SLIDES))


def lattice(origin: tuple[int, int], columns: int, rows: int, patch_px: int) -> np.ndarray:
    """(columns * rows, 2) top-left corners of a patch grid starting at ``origin`` (row by row)."""
    xs, ys = np.meshgrid(np.arange(columns), np.arange(rows))
    return np.stack([origin[0] + xs.ravel() * patch_px, origin[1] + ys.ravel() * patch_px], axis=1).astype(np.int64)


def parity(coords: np.ndarray, patch_px: int) -> np.ndarray:
    """(N,) 1 for the dark squares of the checkerboard, 0 for the light ones (by each patch's cell in its grid)."""
    cells = (coords - coords.min(axis=0)) // patch_px
    return ((cells[:, 0] + cells[:, 1]) % 2).astype(np.int64)


def checker_image(width: int, height: int, coords: np.ndarray, patch_px: int) -> np.ndarray:
    """(height, width, 3) uint8: glass green, every patch square dark or light by its parity (clipped at the edges)."""
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[:] = GLASS
    for (x, y), odd in zip(coords.tolist(), parity(coords, patch_px), strict=True):
        rgb[max(y, 0) : y + patch_px, max(x, 0) : x + patch_px] = DARK if odd else LIGHT
    return rgb


@pytest.fixture(scope="session")
def checker_slide(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A 1000 x 700 slide (PNG and pyramidal TIFF) with two annotated regions whose grids start off the 64-px
    lattice, as BCNB crops do, and whose last column and row run past the slide's right and bottom edges."""
    from balnmp_cache.demo.pyramid import write_pyramidal_tiff

    patch_px, width, height = 64, 1000, 700
    first = lattice((37, 53), 6, 4, patch_px)  # x 37..420, y 53..308
    second = lattice((523, 301), 8, 7, patch_px)  # x 523..1034 > 1000, y 301..749 > 700: partial column and row
    coords = np.concatenate([first, second])
    rgb = checker_image(width, height, coords, patch_px)
    folder = tmp_path_factory.mktemp("checker")
    png = folder / "checker.png"
    Image.fromarray(rgb).save(png)
    tiff = folder / "checker.tiff"
    write_pyramidal_tiff(tiff, rgb, mpp=0.5, tile_px=128, quality=95)
    region = np.concatenate([np.zeros(len(first)), np.ones(len(second))]).astype(np.int32)
    return {"png": png, "tiff": tiff, "coords": coords, "region_id": region, "patch_px": patch_px, "width": width,
            "height": height, "parity": np.concatenate([parity(first, patch_px), parity(second, patch_px)])}
