"""Everything written for one slide: maps, galleries, crops, the scores table and the QuPath GeoJSON.

``<out>/slides/<slide_id>/``::

    attention.png, attention_rgba.png         the attention map (heads with attention scores)
    contribution.png, contribution_rgba.png   the single-patch log-odds map
    top.png, bottom.png                       the most / least attended patches (by the ranking score)
    crops/top-01.jpg ... crops/bottom-08.jpg  the same patches one by one (the cohort view reads them)
    scores.csv                                patch_key, x, y, region_id, attention_logit, attention,
                                              contribution, score, rank, percentile
    patches.geojson                           the patches as QuPath detections with the scores as measurements
    summary.json                              the slide's figures and its settings key; written last

Every file is written atomically; ``summary.json`` last, so a slide whose summary carries the current key
is complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from balnmp_cache.fsio import atomic_write_text
from balnmp_cache.heatmap.canvas import Canvas, canvas_for, cell_px, extent_of, layout_coords, patch_index
from balnmp_cache.heatmap.gallery import Tile, contact_sheet
from balnmp_cache.heatmap.geojson import write_geojson
from balnmp_cache.heatmap.images import SlideImages
from balnmp_cache.heatmap.render import Scale, figure, lookup_table, overlay, save_image
from balnmp_cache.heatmap.scoring import SlideScores, percentiles

__all__ = ["DrawPlan", "SlideLabel", "crop_name", "draw_slide", "flat_warning", "ranking"]

_OUTLINE_CELL_PX = 8  # cells at least this many pixels wide get a darker edge, so neighbours stay apart
SCORE_COLUMNS = ("patch_key", "x", "y", "region_id", "attention_logit", "attention", "contribution", "score", "rank",
                 "percentile")


@dataclass(frozen=True)
class DrawPlan:
    """How every slide of one call is drawn (the same for all slides, so maps compare).

    Attributes:
        attention: the attention map's scale, ``None`` for heads without attention scores.
        contribution: the contribution map's scale.
        score_name: the ranking score (``attention`` or ``contribution``).
        alpha, canvas_px, top_k, gallery_px, geojson, flat_ratio: from the configuration.
        slide_dirs: where to look for moved slides.
        run_line: one header line naming the run and head.
    """

    attention: Scale | None
    contribution: Scale
    score_name: str
    alpha: float
    canvas_px: int
    top_k: int
    gallery_px: int
    geojson: bool
    flat_ratio: float
    slide_dirs: tuple[Path, ...]
    run_line: str


@dataclass(frozen=True)
class SlideLabel:
    """What the run knows about the slide's patient: class name (or ``None``), split, target probability."""

    class_name: str | None
    split: str | None
    probability: float | None
    target_name: str

    def line(self, scores: SlideScores) -> str:
        truth = self.class_name or "label unknown"
        where = f" ({self.split})" if self.split else ""
        prob = f" · p({self.target_name}) = {self.probability:.2f}" if self.probability is not None else ""
        who = f"slide {scores.slide_id} · patient {scores.patient_id}"
        return f"{who} · {truth}{where}{prob} · {scores.n_patches} patches"


def flat_warning(stats: dict[str, Any], flat_ratio: float) -> str | None:
    """The sentence shown on every output of a slide whose attention is near-uniform, else ``None``."""
    if not stats.get("flat"):
        return None
    entropy = stats.get("normalised_entropy")
    shown = f", normalised entropy {entropy:.3f}" if entropy is not None else ""
    return (f"attention is near-uniform: a p95 patch gets {stats['weight_ratio_p95_p5']:.2f}x the weight of a p5 patch "
            f"(< {flat_ratio:g}){shown}; the ranking of patches says little")


def ranking(score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` highest and the ``k`` lowest scores (ties: lower index first)."""
    order = np.argsort(-score, kind="stable")
    return order[:k], np.argsort(score, kind="stable")[:k]


def crop_name(which: str, i: int) -> str:
    """``crops/top-01.jpg``: the file of the i-th (0-based) patch of a slide's top or bottom gallery."""
    return f"crops/{which}-{i + 1:02d}.jpg"


def _canvas(scores: SlideScores, images: SlideImages, layout_xy: np.ndarray, canvas_px: int) -> Canvas:
    """The whole slide when its size is known (file or cache), else the box around the patches."""
    size = images.dimensions() if images.kind == "slide" else None
    width, height = int(scores.attrs.get("slide_width", -1)), int(scores.attrs.get("slide_height", -1))
    if size is None and width > 0 and height > 0 and scores.attrs.get("coords_frame") != "region_offset":
        size = (width, height)
    if size is not None:
        return canvas_for((0, 0), size, canvas_px)
    origin, extent = extent_of(layout_xy, scores.patch_level0_px)
    return canvas_for(origin, extent, canvas_px)


def _maps(scores: SlideScores, plan: DrawPlan, label: SlideLabel, images: SlideImages, folder: Path) -> dict[str, Path]:
    """The attention and contribution maps, blended and RGBA."""
    side = scores.patch_level0_px
    layout_xy = layout_coords(scores.coords, scores.region_id, side, str(scores.attrs.get("coords_frame", "level0")))
    canvas = _canvas(scores, images, layout_xy, plan.canvas_px)
    index = patch_index(canvas, layout_xy, side)
    thumbnail = images.thumbnail(canvas, layout_xy, scores.patch_key, side)
    warning = flat_warning(scores.stats, plan.flat_ratio)
    lines = [label.line(scores), plan.run_line]
    if thumbnail is None:
        lines.append(f"no slide image: {images.reason}")
    files: dict[str, Path] = {}
    maps: list[tuple[str, np.ndarray, Scale, str | None]] = [
        ("contribution", scores.contribution, plan.contribution, None)
    ]
    if plan.attention is not None and scores.attention_logit is not None:
        maps.insert(0, ("attention", scores.attention_logit, plan.attention, warning))
    for name, values, scale, note in maps:
        rgba, blended = overlay(index, scale.unit(values), lookup_table(scale.cmap), thumbnail, plan.alpha,
                                outline=cell_px(canvas, side) >= _OUTLINE_CELL_PX)
        files[name] = save_image(figure(blended, scale, lines, note), folder / f"{name}.png")
        files[f"{name}_rgba"] = save_image(Image.fromarray(rgba, mode="RGBA"), folder / f"{name}_rgba.png")
    return files


def _galleries(scores: SlideScores, plan: DrawPlan, label: SlideLabel, images: SlideImages,
               folder: Path) -> dict[str, Path]:
    """Top and bottom contact sheets and their crops."""
    if plan.top_k == 0:
        return {}
    score = scores.score
    side = scores.patch_level0_px
    warning = flat_warning(scores.stats, plan.flat_ratio) if scores.score_name == "attention" else None
    files: dict[str, Path] = {}
    for which, chosen in zip(("top", "bottom"), ranking(score, plan.top_k), strict=True):
        crops = images.crops(scores.coords[chosen], [str(k) for k in scores.patch_key[chosen]], side, plan.gallery_px)
        tiles = []
        for i, (row, crop) in enumerate(zip(chosen.tolist(), crops, strict=True)):
            if crop is not None:
                save_image(Image.fromarray(crop), folder / crop_name(which, i))
            x, y = scores.coords[row].tolist()
            tiles.append(Tile(crop, (f"#{i + 1}", f"score {score[row]:.4g}", f"x {x}, y {y}")))
        title = "highest" if which == "top" else "lowest"
        lines = [label.line(scores), f"{plan.top_k} patches with the {title} {scores.score_name} score"]
        sheet = contact_sheet(tiles, px=plan.gallery_px, lines=lines, warning=warning)
        files[which] = save_image(sheet, folder / f"{which}.png")
    return files


def _scores_table(scores: SlideScores, path: Path) -> Path:
    import pandas as pd

    score = scores.score
    rank = np.empty(len(score), dtype=np.int64)
    rank[np.argsort(-score, kind="stable")] = np.arange(1, len(score) + 1)
    nan = np.full(len(score), np.nan, dtype=np.float32)
    frame = pd.DataFrame({
        "patch_key": scores.patch_key, "x": scores.coords[:, 0], "y": scores.coords[:, 1],
        "region_id": scores.region_id,
        "attention_logit": nan if scores.attention_logit is None else scores.attention_logit,
        "attention": scores.attention, "contribution": scores.contribution, "score": score, "rank": rank,
        "percentile": percentiles(score),
    }, columns=list(SCORE_COLUMNS))  # fmt: skip
    return atomic_write_text(path, frame.to_csv(index=False, float_format="%.7g"))


def draw_slide(scores: SlideScores, plan: DrawPlan, label: SlideLabel, folder: Path, *, key: str) -> dict[str, Path]:
    """Write every output of one slide into ``folder``; ``summary.json`` (with ``key``) last.

    Returns:
        Output name -> path of every file written (crops aside).
    """
    folder.mkdir(parents=True, exist_ok=True)
    with SlideImages(scores.attrs, plan.slide_dirs) as images:
        files = _maps(scores, plan, label, images, folder)
        files |= _galleries(scores, plan, label, images, folder)
    files["scores"] = _scores_table(scores, folder / "scores.csv")
    if plan.geojson and scores.attrs.get("coords_frame") != "region_offset":
        measurements = {"percentile": percentiles(scores.score), "contribution": scores.contribution,
                        "attention": scores.attention}
        if scores.attention_logit is not None:
            measurements = {"attention_logit": scores.attention_logit, **measurements}
        files["geojson"] = write_geojson(folder / "patches.geojson", slide_id=scores.slide_id, level0_xy=scores.coords,
                                         patch_level0_px=scores.patch_level0_px, keys=scores.patch_key,
                                         measurements=measurements)
    summary = {"key": key, "slide_id": scores.slide_id, "patient_id": scores.patient_id,
               "files": {name: path.name for name, path in files.items()}, "stats": scores.stats}
    files["summary"] = atomic_write_text(folder / "summary.json", json.dumps(summary, indent=1, allow_nan=False) + "\n")
    return files
