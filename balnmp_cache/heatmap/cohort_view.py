"""The cohort view: per class, the most and the least attended patches over the patients of one split.

Ranking scores compare across slides (a patch's attention score and its single-patch log-odds depend on
that patch alone), so one sheet can line up patches of many patients. The cohort's k highest patches of a
class are among the k highest of their own slides, so the sheet is built from the per-slide crops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from balnmp_cache.heatmap.gallery import Tile, grid_sheet
from balnmp_cache.heatmap.outputs import DrawPlan, SlideLabel, crop_name, ranking
from balnmp_cache.heatmap.render import save_image
from balnmp_cache.heatmap.scoring import RunModel, SlideScores

__all__ = ["cohort_members", "write_cohort_view"]


def cohort_members(scored: Sequence[SlideScores], labels: Mapping[str, SlideLabel], class_name: str,
                   split: str) -> list[SlideScores]:
    """The slides of patients of ``class_name`` in ``split`` (``all``: every split)."""
    return [s for s in scored if labels[s.slide_id].class_name == class_name
            and (split == "all" or labels[s.slide_id].split == split)]


def _tiles(out: Path, members: Sequence[SlideScores], which: str, k: int) -> list[Tile]:
    """The k highest (``top``) or lowest (``bottom``) patches over ``members``, from their slides' crops."""
    candidates = []
    for scores in members:
        chosen = ranking(scores.score, k)[0 if which == "top" else 1]
        candidates += [(float(scores.score[row]), i, row, scores) for i, row in enumerate(chosen.tolist())]
    candidates.sort(key=lambda c: -c[0] if which == "top" else c[0])
    tiles = []
    for value, i, row, scores in candidates[:k]:
        path = out / "slides" / scores.slide_id / crop_name(which, i)
        image = np.asarray(Image.open(path).convert("RGB")) if path.is_file() else None
        x, y = scores.coords[row].tolist()
        tiles.append(Tile(image, (f"patient {scores.patient_id}", f"score {value:.4g}", f"x {x}, y {y}")))
    return tiles


def write_cohort_view(out: Path, model: RunModel, plan: DrawPlan, scored: Sequence[SlideScores],
                      labels: Mapping[str, SlideLabel], *, split: str) -> Path | None:
    """Write ``cohort.png`` (two rows per class) into ``out``; ``None`` when there is nothing to show."""
    if plan.top_k == 0 or not scored:
        return None
    rows = []
    for name in model.class_names:
        members = cohort_members(scored, labels, name, split)
        if not members:
            continue
        who = f"{name}, {len(members)} slide(s)"
        rows.append((f"{who}: highest {plan.score_name} score", _tiles(out, members, "top", plan.top_k)))
        rows.append((f"{who}: lowest {plan.score_name} score", _tiles(out, members, "bottom", plan.top_k)))
    if not rows:
        return None
    flat = [s for s in scored if s.stats.get("flat")]
    warning = None
    if plan.score_name == "attention" and flat:
        warning = (f"attention is near-uniform on {len(flat)} of {len(scored)} slides (p95/p5 weight ratio "
                   f"< {plan.flat_ratio:g}): their patches are ranked by differences the model barely uses")
    lines = [plan.run_line, f"cohort view: {split} patients; per class the {plan.top_k} patches with the highest and "
             f"lowest {plan.score_name} score over all their slides (scores compare across slides)"]
    sheet = grid_sheet(rows, px=plan.gallery_px, lines=lines, columns=plan.top_k, warning=warning)
    return save_image(sheet, out / "cohort.png")
