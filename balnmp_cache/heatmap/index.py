"""``heatmaps.json`` and ``slides.csv``: what one heatmap call drew, for the report and for people.

``heatmaps.json`` names the run, the head, how each score is defined for it, the scales of the maps, the
cohort view and, per slide, its outcome, label, prediction, uniformity figures and files (paths relative to
the output folder). :func:`read_index` is how the report reads it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from balnmp_cache.errors import ConfigError
from balnmp_cache.fsio import atomic_write_text

if TYPE_CHECKING:
    from balnmp_cache.heatmap.outputs import DrawPlan, SlideLabel
    from balnmp_cache.heatmap.scoring import RunModel, SlideScores
    from balnmp_cache.heatmap.stage import HeatmapResult

__all__ = ["INDEX_FORMAT", "INDEX_NAME", "definitions", "read_index", "write_index"]

INDEX_NAME = "heatmaps.json"
INDEX_FORMAT = "balnmp-cache-heatmaps"
SLIDE_COLUMNS = ("slide_id", "patient_id", "status", "class", "split", "probability", "n_patches", "flat",
                 "weight_ratio_p95_p5", "normalised_entropy", "effective_patches", "attention_logit_std",
                 "contribution_mean", "contribution_std", "reason")


def definitions(head: str, *, has_attention: bool, clinical: bool, target: str) -> dict[str, str]:
    """What each score means for this head, in words (written into the index and shown by the report)."""
    alone = (f"log-odds of {target} that the head gives the patch alone, as a bag of one patch (its attention is "
             "then 1 and the pooled embedding is the patch's own)")
    if clinical:
        alone += "; with the patient's clinical vector, which adds the same offset to every patch of a slide"
    attention = ("pre-softmax attention score of the patch: depends on the patch alone, so it compares across bags "
                 "and slides" if has_attention else
                 f"none: the {head} head does not weight patches by a softmax of per-patch scores")
    return {
        "attention_logit": attention,
        "attention": "weight of the patch when the whole slide is one bag (softmax of the scores over the slide)"
        if has_attention else "weight of the patch when the whole slide is one bag, as the head's pooling gives it",
        "contribution": alone + ". It is not an additive share of the bag's logit: the classifier after pooling "
        "is not linear (Linear-ReLU-Linear by default)",
        "percentile": "100 x rank / N of the ranking score within the slide (100 = highest)",
        "flat": "a p95 patch gets less than flat_ratio times the weight of a p5 patch in the same bag",
    }


def _slide_entry(scores: SlideScores, label: SlideLabel, files: Mapping[str, Path], out: Path,
                 row: Any) -> dict[str, Any]:
    return {
        "slide_id": scores.slide_id, "patient_id": scores.patient_id, "status": row.status, "reason": row.reason,
        "class": label.class_name, "split": label.split, "probability": label.probability,
        "patch_level0_px": scores.patch_level0_px, **scores.stats,
        "files": {name: path.relative_to(out).as_posix() for name, path in sorted(files.items())},
    }  # fmt: skip


def write_index(out: Path, model: RunModel, plan: DrawPlan | None, result: HeatmapResult, *,
                scored: Sequence[SlideScores] = (), drawn: Mapping[str, Mapping[str, Path]] | None = None,
                labels: Mapping[str, SlideLabel] | None = None, cache_dir: Path | None = None) -> Path:
    """Write ``heatmaps.json`` and ``slides.csv`` into ``out``; returns the index's path."""
    drawn, labels = drawn or {}, labels or {}
    rows = {row.slide_id: row for row in result.rows}
    slides = [_slide_entry(s, labels[s.slide_id], drawn[s.slide_id], out, rows[s.slide_id]) for s in scored]
    slides += [{"slide_id": r.slide_id, "patient_id": r.patient_id, "status": r.status, "reason": r.reason, "files": {}}
               for r in result.rows if r.status == "failed"]
    ckpt = model.checkpoint
    has_attention = plan is not None and plan.attention is not None
    target = model.class_names[model.target_class]
    index = {
        "format": INDEX_FORMAT, "version": 1, "complete": True, "run_dir": str(model.run_dir),
        "run": model.run_dir.name, "head": ckpt.head, "task": ckpt.task, "task_name": ckpt.task_name,
        "classes": list(model.class_names), "target_class": model.target_class, "clinical": bool(ckpt.clinical_dim),
        "cache": None if cache_dir is None else str(cache_dir), "message": result.message,
        "score": None if plan is None else plan.score_name,
        "definitions": definitions(ckpt.head, has_attention=has_attention, clinical=bool(ckpt.clinical_dim),
                                   target=target),
        "scales": None if plan is None else {
            "attention": None if plan.attention is None else vars(plan.attention),
            "contribution": vars(plan.contribution),
        },
        "cohort_view": "cohort.png" if "cohort.png" in result.files else None,
        "slides": slides,
    }  # fmt: skip
    _write_slides_csv(out / "slides.csv", slides)
    result.files["slides.csv"] = out / "slides.csv"
    return atomic_write_text(out / INDEX_NAME, json.dumps(index, indent=1, allow_nan=False) + "\n")


def _write_slides_csv(path: Path, slides: Sequence[Mapping[str, Any]]) -> Path:
    import pandas as pd

    frame = pd.DataFrame([{c: s.get(c) for c in SLIDE_COLUMNS} for s in slides], columns=list(SLIDE_COLUMNS))
    return atomic_write_text(path, frame.to_csv(index=False, float_format="%.6g"))


def read_index(folder: Path) -> dict[str, Any]:
    """The ``heatmaps.json`` of a heatmap output folder.

    Raises:
        ConfigError: the file is missing, not valid JSON, or not a heatmap index (the message names it).
    """
    path = Path(folder) / INDEX_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        hint = f"run `balnmp-cache heatmap RUN_DIR --out {folder}`"
        raise ConfigError(f"{folder} holds no {INDEX_NAME}; {hint}") from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} is not readable JSON ({err}); run balnmp-cache heatmap again") from err
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise ConfigError(f"{path} is not a heatmap index (format {INDEX_FORMAT}); run balnmp-cache heatmap again")
    return data
