"""H&E-like rendering of one demo slide with vectorised numpy.

The picture is built as two stain concentration maps, haematoxylin (nuclei, purple) and eosin (stroma and
cytoplasm, pink), turned into RGB by Beer-Lambert absorption through a lookup table. Tissue classes:

- background outside the cores: near-white glass, about (243, 242, 246), never exactly 255;
- non-tumour tissue: fibrous pink stroma with sparse spindle nuclei, fat (empty vacuoles) and lymphocyte
  clusters;
- tumour (inside the polygons): nests of tumour cells (lilac cytoplasm, round-oval nuclei 15-20 px long)
  separated by thin stroma;
- high-grade fields inside the tumour (the planted signal, see :mod:`balnmp_cache.demo.planted`): solid nests
  of larger (20-27 px), darker, irregular nuclei with nucleoli, packed more densely.

Nuclei are stamped from fixed banks of sprites by ``numpy.bincount`` over flat pixel indices, so a slide of a
few megapixels renders in a fraction of a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache, lru_cache
from typing import TypedDict

import numpy as np
from PIL import Image, ImageDraw

from balnmp_cache.demo.layout import SlideLayout, rasterise

__all__ = ["high_grade_mask", "render_slide"]

_Q = 80.0  # lookup-table steps per unit of stain concentration
_PAD = 40  # canvas margin for sprites that overhang the image (pixels)
_H_OD = np.array([0.80, 1.00, 0.50], dtype=np.float32)  # haematoxylin optical density per unit
_E_OD = np.array([0.35, 0.85, 0.60], dtype=np.float32)  # eosin
_GLASS_OD = np.array([0.048, 0.052, 0.036], dtype=np.float32)  # background tint, about (243, 242, 246)


class _Kind(TypedDict):
    """A nucleus kind: semi-axis a range (px), b/a range, outline irregularity, darkness, chromatin texture,
    nucleolus."""

    a: tuple[float, float]
    ratio: tuple[float, float]
    irregular: float
    dark: float
    chromatin: float
    nucleolus: bool


_KINDS: dict[str, _Kind] = {
    "tumour": _Kind(a=(7.5, 10.0), ratio=(0.65, 0.90), irregular=0.06, dark=1.15, chromatin=0.30, nucleolus=False),
    "high_grade": _Kind(a=(10.0, 13.5), ratio=(0.55, 0.90), irregular=0.14, dark=1.50, chromatin=0.40, nucleolus=True),
    "spindle": _Kind(a=(9.0, 13.0), ratio=(0.20, 0.30), irregular=0.03, dark=1.10, chromatin=0.20, nucleolus=False),
    "lymphocyte": _Kind(a=(4.5, 5.5), ratio=(0.85, 1.00), irregular=0.04, dark=1.60, chromatin=0.20, nucleolus=False),
    "fat": _Kind(a=(22.0, 32.0), ratio=(0.80, 1.00), irregular=0.05, dark=1.00, chromatin=0.0, nucleolus=False),
}
_BANK_SIZE = 24


@lru_cache(maxsize=1)
def _lut() -> np.ndarray:
    """(256 * 256, 3) uint8 RGB for quantised (haematoxylin, eosin) concentrations."""
    conc = np.arange(256, dtype=np.float32) / _Q
    od = conc[:, None, None] * _H_OD + conc[None, :, None] * _E_OD + _GLASS_OD
    return np.clip(255.0 * np.exp(-od), 0, 254).astype(np.uint8).reshape(-1, 3)


@cache
def _bank(kind: str) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
    """Fixed sprites of one nucleus kind: (dy, dx, alpha) per sprite, alpha in 0..1 (float32)."""
    spec = _KINDS[kind]
    rng = np.random.default_rng(sum(map(ord, kind)))  # the bank is part of the generator, not of the seed
    sprites = []
    for _ in range(_BANK_SIZE):
        a = rng.uniform(*spec["a"])
        b = a * rng.uniform(*spec["ratio"])
        angle = rng.normal(0.0, 0.3) if kind == "spindle" else rng.uniform(0, math.pi)
        half = math.ceil(a * (1 + 3 * spec["irregular"])) + 2
        yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
        u = xx * math.cos(angle) + yy * math.sin(angle)
        v = -xx * math.sin(angle) + yy * math.cos(angle)
        phi = np.arctan2(v / b, u / a)
        harmonics = [(k, rng.normal(0, spec["irregular"] / (k - 1)), rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4)]
        outline = 1.0 + sum(amp * np.cos(k * phi + phase) for k, amp, phase in harmonics)
        r = np.sqrt((u / a) ** 2 + (v / b) ** 2) / outline
        alpha = np.clip((1.0 - r) * a / 1.2, 0.0, 1.0)  # about 1.2 px soft edge
        if spec["chromatin"]:
            alpha *= 1.0 - spec["chromatin"] * rng.random(alpha.shape, dtype=np.float32)
        if spec["nucleolus"]:
            cy, cx = rng.uniform(-0.3, 0.3, 2) * b
            alpha += 0.5 * np.clip(1.8 - np.hypot(yy - cy, xx - cx), 0, 1) * (r < 1)
            alpha *= 1.0 + 0.25 * np.clip((r - 0.7) / 0.3, 0, 1) * (r < 1)  # chromatin at the rim
        keep = alpha > 0.02
        sprites.append((yy[keep].astype(np.int64), xx[keep].astype(np.int64), alpha[keep].astype(np.float32)))
    return tuple(sprites)


def _field(rng: np.random.Generator, shape: tuple[int, int], scale: tuple[float, float]) -> np.ndarray:
    """Smooth Gaussian-like noise of about unit spread; ``scale`` is the feature size (y, x) in pixels."""
    low = (int(shape[0] / scale[0]) + 4, int(shape[1] / scale[1]) + 4)
    noise = rng.standard_normal(low, dtype=np.float32)
    size = (math.ceil(low[1] * scale[1]), math.ceil(low[0] * scale[0]))
    image = Image.fromarray(noise).resize(size, Image.Resampling.BICUBIC)  # float32 -> mode "F"
    top, left = 2 * int(scale[0]), 2 * int(scale[1])
    out = np.array(image)[top : top + shape[0], left : left + shape[1]]
    out *= np.float32(1.6)  # bicubic interpolation of white noise keeps about 0.6 of its spread
    return out


def _grid(rng: np.random.Generator, shape: tuple[int, int], spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Jittered grid points (y, x) over ``shape``: nuclei that rarely overlap."""
    ys, xs = np.mgrid[spacing / 2 : shape[0] : spacing, spacing / 2 : shape[1] : spacing]
    ys = ys.ravel() + rng.uniform(-0.35, 0.35, ys.size) * spacing
    xs = xs.ravel() + rng.uniform(-0.35, 0.35, xs.size) * spacing
    ys = np.clip(np.rint(ys), 0, shape[0] - 1).astype(np.int64)
    xs = np.clip(np.rint(xs), 0, shape[1] - 1).astype(np.int64)
    return ys, xs


class _Stamper:
    """Accumulates sprites into flat (padded) haematoxylin and eosin increments."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape
        self.width = shape[1] + 2 * _PAD
        self.size = (shape[0] + 2 * _PAD) * self.width
        self.index: list[np.ndarray] = []
        self.haem: list[np.ndarray] = []
        self.eosin: list[np.ndarray] = []

    def stamp(self, rng: np.random.Generator, kind: str, ys: np.ndarray, xs: np.ndarray, *,
              haem: float, eosin: float) -> None:
        """Add sprites of ``kind`` centred at (ys, xs); ``haem``/``eosin``: change per unit of sprite alpha."""
        bank = _bank(kind)
        dark = rng.uniform(0.85, 1.15, ys.size).astype(np.float32)
        which = rng.integers(0, len(bank), ys.size)
        order = np.argsort(which, kind="stable")
        bounds = np.searchsorted(which[order], np.arange(len(bank) + 1))
        for k, (dy, dx, alpha) in enumerate(bank):
            sel = order[bounds[k] : bounds[k + 1]]
            if sel.size == 0:
                continue
            base = (ys[sel] + _PAD) * self.width + xs[sel] + _PAD
            self.index.append((base[:, None] + dy * self.width + dx).ravel())
            weight = (dark[sel, None] * alpha).ravel()
            self.haem.append(weight * np.float32(haem))
            self.eosin.append(np.broadcast_to(alpha * np.float32(eosin), (sel.size, alpha.size)).ravel())

    def add_to(self, haem: np.ndarray, eosin: np.ndarray) -> None:
        """Add the stamped increments to the (height, width) concentration maps in place."""
        if not self.index:
            return
        index = np.concatenate(self.index)
        for target, weights in ((haem, self.haem), (eosin, self.eosin)):
            flat = np.bincount(index, weights=np.concatenate(weights), minlength=self.size)
            target += flat.reshape(-1, self.width)[_PAD:-_PAD, _PAD:-_PAD]


def _discs(fields: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    image = Image.new("L", (shape[1], shape[0]), 0)
    draw = ImageDraw.Draw(image)
    for x, y, r in fields.tolist():
        draw.ellipse((x - r, y - r, x + r, y + r), fill=1)
    return np.asarray(image, dtype=bool)


def high_grade_mask(fields: np.ndarray, tumour: np.ndarray) -> np.ndarray:
    """(height, width) bool: the tumour pixels inside a high-grade field, exactly as :func:`render_slide` paints them.

    Args:
        fields: (F, 3) centre x, centre y, radius of every high-grade field (level-0 pixels).
        tumour: (height, width) bool, True inside a tumour polygon.
    """
    return _discs(np.asarray(fields, dtype=np.int64).reshape(-1, 3), tumour.shape) & tumour


def render_slide(rng: np.random.Generator, layout: SlideLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paint one slide.

    Args:
        rng: the patient's rendering stream.
        layout: the slide's geometry.

    Returns:
        ``rgb``, (height, width, 3) uint8; ``high_grade``, (height, width) bool: tumour pixels inside a
        high-grade field; ``tumour``, (height, width) bool: pixels inside a tumour polygon.
    """
    shape = (layout.height, layout.width)
    tissue = rasterise(list(layout.cores) + list(layout.regions), shape)
    tumour = rasterise(layout.regions, shape)
    high = high_grade_mask(layout.fields, tumour)

    nest_noise = _field(rng, shape, (30.0, 30.0))
    fibre = _field(rng, shape, (3.0, 30.0))  # thin horizontal streaks; becomes the eosin map in place
    # Nests of tumour cells where the noise is high; solid nests in high-grade fields.
    nest = nest_noise > np.float32(-0.45)
    nest |= high & (nest_noise > np.float32(-1.1))
    nest &= tumour

    # Eosin: fibrous stroma everywhere in tissue, paler lilac cytoplasm in the nests; glass is cleared at the end.
    eosin = fibre
    eosin *= np.float32(0.10)
    eosin += np.float32(0.55)
    eosin = np.where(nest, np.float32(0.30) + np.float32(0.04) * nest_noise, eosin)
    haem = np.where(nest, np.where(high, np.float32(0.25), np.float32(0.22)), np.float32(0.08))

    _stamp_cells(rng, shape, tissue, tumour, nest, high).add_to(haem, eosin)

    # Quantise both stains into one lookup index; glass (outside the tissue) gets index 0.
    haem *= np.float32(_Q)
    eosin *= np.float32(_Q)
    np.clip(haem, 0, 255, out=haem)
    np.clip(eosin, 0, 255, out=eosin)
    index = haem.astype(np.uint16)
    index <<= 8
    index |= eosin.astype(np.uint16)
    index *= tissue
    return _lut()[index], high, tumour


def _stamp_cells(rng: np.random.Generator, shape: tuple[int, int], tissue: np.ndarray, tumour: np.ndarray,
                 nest: np.ndarray, high: np.ndarray) -> _Stamper:
    """Nuclei of every kind on jittered grids: tumour and high-grade cells in the nests, spindle cells in the
    stroma, lymphocytes in their zones outside the tumour, fat vacuoles."""
    stamper = _Stamper(shape)
    fat_zone = _zones(rng, shape, 0.5)
    lymph_zone = _zones(rng, shape, 1.2)

    ys, xs = _grid(rng, shape, 24.0)
    keep = nest[ys, xs] & ~high[ys, xs]
    stamper.stamp(rng, "tumour", ys[keep], xs[keep], haem=_KINDS["tumour"]["dark"], eosin=-0.25)
    ys, xs = _grid(rng, shape, 23.0)
    keep = nest[ys, xs] & high[ys, xs]
    stamper.stamp(rng, "high_grade", ys[keep], xs[keep], haem=_KINDS["high_grade"]["dark"], eosin=-0.25)
    ys, xs = _grid(rng, shape, 36.0)
    in_tumour = tumour[ys, xs]
    keep = tissue[ys, xs] & ~nest[ys, xs] & (in_tumour | ~fat_zone(ys, xs)) & (rng.random(ys.size) < 0.55)
    stamper.stamp(rng, "spindle", ys[keep], xs[keep], haem=_KINDS["spindle"]["dark"], eosin=-0.3)
    ys, xs = _grid(rng, shape, 15.0)
    keep = tissue[ys, xs] & ~tumour[ys, xs] & lymph_zone(ys, xs) & (rng.random(ys.size) < 0.6)
    stamper.stamp(rng, "lymphocyte", ys[keep], xs[keep], haem=_KINDS["lymphocyte"]["dark"], eosin=-0.3)
    ys, xs = _grid(rng, shape, 60.0)
    keep = tissue[ys, xs] & ~tumour[ys, xs] & fat_zone(ys, xs) & ~lymph_zone(ys, xs)
    stamper.stamp(rng, "fat", ys[keep], xs[keep], haem=-0.08, eosin=-0.62)  # empty vacuoles: almost glass
    return stamper


def _zones(
    rng: np.random.Generator, shape: tuple[int, int], threshold: float
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A smooth random yes/no map with blobs about 250 px across, evaluated at points ``(ys, xs)``."""
    cell = 64
    low = (shape[0] // 256 + 3, shape[1] // 256 + 3)
    noise = rng.standard_normal(low, dtype=np.float32)
    size = (low[1] * 4, low[0] * 4)
    zone = np.asarray(Image.fromarray(noise).resize(size, Image.Resampling.BICUBIC)) * np.float32(1.6) > threshold

    def at(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return zone[ys // cell, xs // cell]

    return at
