"""Tiny synthetic slides for the nucleus stage: plain PNG images of purple nuclei on pink tissue."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

STATUSES = ("N0", "N+(1-2)", "N+(>2)")


def draw_slide(path: Path, *, seed: int, radius: float, spacing: int, side: int = 512, glass: int = 32) -> Path:
    """A side x side image: glass, and inside a ``glass``-px margin tissue with nuclei of ``radius`` px on a
    jittered grid (each 256-px patch of the tissue grid is then (224 / 256)² = 77% tissue)."""
    rng = np.random.default_rng(seed)
    half = int(2 * radius) + 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    rgb = np.empty((side, side, 3), dtype=np.uint8)
    rgb[...] = (243, 242, 246)
    rgb[glass : side - glass, glass : side - glass] = (232, 176, 205)
    for cy in range(glass + spacing // 2, side - glass - spacing // 2, spacing):
        for cx in range(glass + spacing // 2, side - glass - spacing // 2, spacing):
            dx, dy = rng.uniform(-2, 2, 2)
            a, b, t = radius * rng.uniform(1.0, 1.4), radius * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi)
            u, v = (xx - dx) * np.cos(t) + (yy - dy) * np.sin(t), -(xx - dx) * np.sin(t) + (yy - dy) * np.cos(t)
            window = rgb[cy - half : cy + half + 1, cx - half : cx + half + 1]
            window[(u / a) ** 2 + (v / b) ** 2 <= 1] = (95, 60, 150)
    Image.fromarray(rgb).save(path)
    return path


@pytest.fixture
def cohort_dir(tmp_path: Path) -> Path:
    """Six slides (N0: small sparse nuclei; N(+): large crowded ones) and a cohort CSV with splits."""
    slides = tmp_path / "slides"
    slides.mkdir()
    rows = ["patient_id,ALN status,split"]
    for i in range(6):
        status = STATUSES[0] if i % 2 == 0 else STATUSES[1 + (i // 2) % 2]
        big = status != "N0"
        draw_slide(slides / f"p{i}.png", seed=i, radius=7.0 if big else 4.5, spacing=22 if big else 30)
        rows.append(f"p{i},{status},{['train', 'train', 'val', 'train', 'test', 'train'][i]}")
    (tmp_path / "cohort.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp_path
