"""Configuration of the ``heatmap`` stage (``stages/heatmap.toml``), the keys and flags of ``balnmp-cache heatmap``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, field_validator, model_validator

from balnmp_cache.config import StageConfig

__all__ = ["COLORMAPS", "DIVERGING_COLORMAPS", "Colormap", "DivergingColormap", "HeatmapConfig", "Norm"]

Norm = Literal["rank", "raw", "two_slope"]
Colormap = Literal["magma", "viridis", "inferno", "cividis"]
DivergingColormap = Literal["RdBu_r", "PuOr_r", "coolwarm"]

COLORMAPS: tuple[str, ...] = get_args(Colormap)
"""Perceptually uniform maps for magnitudes (ranks, attention logits)."""

DIVERGING_COLORMAPS: tuple[str, ...] = get_args(DivergingColormap)
"""Diverging maps for signed scores around a centre (contributions, two-slope normalisation)."""


class HeatmapConfig(StageConfig):
    """One ``heatmap`` call: a trained run's per-patch scores drawn on the slides of a feature cache.

    ``run_dir`` and ``slides`` are the ``RUN_DIR [SLIDES...]`` arguments; every other field is the flag of
    the same name.
    """

    run_dir: Path | None = Field(None, description="a finished train run directory (RUN_DIR)")
    slides: list[str] = Field(default_factory=list, description="slide ids to draw; default every slide of the cache")
    cache: Path | None = Field(None, description="feature cache of the slides; default the run's training cache")
    cohort: Path | None = Field(
        None, description="clinical data for runs that fused it; default the cohort the run was trained on"
    )
    out: Path | None = Field(None, description="output folder; default <run_dir>/heatmaps")
    slide_dirs: list[Path] = Field(
        default_factory=list,
        description="folders to look for a slide in (by file name) when its cached source_path no longer exists",
    )
    score: Literal["auto", "attention", "contribution"] = Field(
        "auto",
        description="what ranks patches and colours the main map: 'attention' (the pre-softmax attention score), "
        "'contribution' (single-patch log-odds), 'auto' = attention where the head has it",
    )
    norm: Norm = Field(
        "rank",
        description="main map: 'rank' (percentile within the slide), 'raw' (one range for all slides of the call), "
        "'two_slope' (raw, diverging around `center`)",
    )
    contribution_norm: Norm = Field("two_slope", description="normalisation of the contribution map")
    center: float | None = Field(
        None,
        description="centre of two-slope maps; default 0 for contributions (even log-odds) and the cohort median "
        "for attention scores",
    )
    cmap: Colormap = Field("magma", description="colormap of rank and raw maps")
    diverging_cmap: DivergingColormap = Field("RdBu_r", description="colormap of two-slope maps")
    alpha: float = Field(0.55, ge=0.0, le=1.0, description="opacity of the patch cells over the thumbnail")
    canvas_px: int = Field(1024, ge=64, le=16384, description="longest side of the rendered maps in pixels")
    top_k: int = Field(8, ge=0, le=256, description="patches in each slide's top and bottom gallery")
    gallery_px: int = Field(160, ge=32, le=1024, description="side of one patch in the galleries in pixels")
    cohort_split: Literal["test", "val", "train", "all"] = Field(
        "test", description="patients of the cohort view (most and least attended patches per class)"
    )
    target_class: int | None = Field(
        None, ge=0, description="class whose log-odds a contribution is; default the last class (N(+) for task 0)"
    )
    flat_ratio: float = Field(
        1.5,
        gt=1.0,
        description="attention counts as near-uniform on a slide when a 95th-percentile patch gets less than this "
        "many times the weight of a 5th-percentile patch in the same bag",
    )
    geojson: bool = Field(True, description="write each slide's patches as QuPath detections (GeoJSON)")
    force: bool = Field(False, description="redraw slides already drawn with the same run and settings")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the head scores the patches")

    @field_validator("slides")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _has_run(self) -> HeatmapConfig:
        if self.run_dir is None:
            raise ValueError("no run directory: pass RUN_DIR (the --out of a train run) or set run_dir")
        return self

    @property
    def out_dir(self) -> Path:
        """Where the outputs go: ``out``, else ``<run_dir>/heatmaps``."""
        if self.out is not None:
            return Path(self.out)
        return Path(self.run_dir or ".") / "heatmaps"
