"""A batch of segmented patches -> rows of the slide's nucleus table and of its patch list, in physical units.

Units: with the slide's MPP known (metadata or ``--slide-mpp``) lengths are in µm (``_um``), areas in µm²
(``_um2``) and density in nuclei per mm² of tissue (``density_per_mm2``); without it in pixels of the
analysed patch (``_px``, ``_px2``) and nuclei per 10⁶ px² of tissue (``density_per_mpx``). The column names
say which (:func:`unit_names`).

**Density** of a patch: the nuclei whose centroid lies in it (all of them, those cut by the patch edge
included) divided by the patch's tissue area, the pixels that are not background by the rule of
``background_ratio`` (HSV saturation >= 0.08 and some channel < 235; pixels painted white outside the
annotated polygon are background). Every nucleus row repeats its patch's density.

**Orientation order** of a patch: the debiased squared mean resultant length of the doubled axis angles
of its nuclei not cut by the edge, (n R² - 1) / (n - 1) with R = |mean(exp(2i theta))|, defined from
``min_patch_nuclei`` nuclei: about 0 for randomly oriented nuclei whatever n (R² alone grows as 1/n
for few nuclei), 1 when all are parallel. ``orientation_deviation_deg`` of a nucleus is the angle between
its axis and its patch's mean axis, 0-90°: the rotation-invariant part of the orientation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from balnmp_cache.nuclei.classical import hematoxylin_od
from balnmp_cache.nuclei.features import measure_nuclei

__all__ = ["LENGTHS", "MeasuredBatch", "measure_batch", "tissue_mask", "unit_names"]

LENGTHS = ("major_axis", "minor_axis", "perimeter", "circumference")
"""Length features (µm or px); ``area`` is the one area feature."""

_SHAPE = ("orientation_deg", "eccentricity", "circularity", "rectangularity", "solidity", "mean_hematoxylin_od")


def unit_names(physical: bool) -> dict[str, str]:
    """Canonical name -> column name: ``area`` -> ``area_um2`` (physical) or ``area_px2``; likewise lengths, density."""
    length, area = ("um", "um2") if physical else ("px", "px2")
    names = {"area": f"area_{area}", **{k: f"{k}_{length}" for k in LENGTHS}}
    names["density"] = "density_per_mm2" if physical else "density_per_mpx"
    names["tissue"] = f"tissue_{area}"
    return names


def tissue_mask(patches: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) uint8 -> (B, H, W) bool: not background (saturation >= 0.08 and min channel < 235)."""
    r, g, b = patches[..., 0], patches[..., 1], patches[..., 2]
    high = np.maximum(np.maximum(r, g), b).astype(np.float32)
    low = np.minimum(np.minimum(r, g), b)
    return (high - low >= np.float32(0.08) * np.maximum(high, 1)) & (low < 235)


@dataclass
class MeasuredBatch:
    """Columns of the nucleus rows and of the patch rows of one batch (patch index local to the batch)."""

    nuclei: dict[str, np.ndarray]
    patches: dict[str, np.ndarray]


def _orientation_order(
    theta_deg: np.ndarray, patch: np.ndarray, n_patches: int, min_nuclei: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per patch the debiased order and mean axis (deg) of ``theta_deg``; NaN below ``min_nuclei``."""
    doubled = np.radians(2 * theta_deg)
    n = np.bincount(patch, minlength=n_patches).astype(np.float64)
    c = np.bincount(patch, weights=np.cos(doubled), minlength=n_patches)
    s = np.bincount(patch, weights=np.sin(doubled), minlength=n_patches)
    enough = n >= min_nuclei
    safe = np.where(enough, n, 2.0)
    r2 = (c * c + s * s) / (safe * safe)
    order = np.where(enough, (safe * r2 - 1) / (safe - 1), np.nan)
    axis = np.where(enough, np.mod(np.degrees(0.5 * np.arctan2(s, c)), 180.0), np.nan)
    return order, axis


def measure_batch(
    patches: np.ndarray, labels: np.ndarray, *, px_um: float | None, min_patch_nuclei: int
) -> MeasuredBatch:
    """Measure every nucleus of a batch.

    Args:
        patches: (B, H, W, 3) uint8 as segmented.
        labels: (B, H, W) int labels from the segmenter.
        px_um: µm per patch pixel, ``None`` when unknown (features then in pixels).
        min_patch_nuclei: nuclei a patch needs for its orientation order.

    Returns:
        Nucleus columns (``patch`` = index in the batch, ``x_px``/``y_px`` = centroid in patch pixels, the
        features by :func:`unit_names`) and patch columns (tissue area, ``n_nuclei``, density, order).
    """
    if len(patches) == 0:
        raise ValueError("measure_batch needs at least one patch")
    names = unit_names(px_um is not None)
    scale = 1.0 if px_um is None else px_um
    tissue = tissue_mask(patches).reshape(len(patches), -1).sum(axis=1).astype(np.float64)
    parts = []
    for i in range(len(patches)):
        measured = measure_nuclei(labels[i], hematoxylin_od(patches[i]))
        measured["patch"] = np.full(len(measured["border"]), i, dtype=np.int32)
        parts.append(measured)
    col = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    patch = col["patch"]
    count = np.bincount(patch, minlength=len(patches)).astype(np.float64)
    tissue_area = tissue * scale**2
    # per mm² = per 10^6 µm², or per 10^6 px² without an MPP
    density = np.where(tissue_area > 0, count / np.maximum(tissue_area, 1e-12) * 1e6, np.nan)
    inner = ~col["border"]
    order, axis = _orientation_order(col["orientation_deg"][inner], patch[inner], len(patches), min_patch_nuclei)
    deviation = np.abs(np.mod(col["orientation_deg"] - axis[patch] + 90.0, 180.0) - 90.0)
    nuclei = {
        "patch": patch, "x_px": col["centroid_x_px"], "y_px": col["centroid_y_px"], "border": col["border"],
        names["area"]: col["area_px2"] * scale**2,
        **{names[k]: col[f"{k}_px"] * scale for k in LENGTHS},
        **{k: col[k] for k in _SHAPE}, "orientation_deviation_deg": np.where(col["border"], np.nan, deviation),
        names["density"]: density[patch],
    }  # fmt: skip
    patch_cols = {names["tissue"]: tissue_area, "n_nuclei": count.astype(np.int32), names["density"]: density,
                  "orientation_order": order}  # fmt: skip
    return MeasuredBatch(nuclei, patch_cols)

