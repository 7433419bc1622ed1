"""The report's figures with uncertainty, written to files: ROC and PR bands, calibration, training, one-vs-rest ROC.

File names: ``roc_<task>_<split>``, ``pr_<task>_<split>``, ``calibration_<task>_<split>``,
``training_<task>`` (per group of comparable binary runs) and ``roc_ovr_<run>`` (per multi-class run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.report.bootstrap import roc_band, stratified_resamples
from balnmp_cache.report.calibration_plot import CalibrationPanel, calibration_figure
from balnmp_cache.report.compare import group_runs
from balnmp_cache.report.figures import safe_stem, save_figure
from balnmp_cache.report.multiclass import mann_whitney_auc
from balnmp_cache.report.plots import Curve, band_figure, draw_panel, panel_grid, short_names
from balnmp_cache.report.predictions import SPLIT_LABELS, SPLITS, RunPredictions
from balnmp_cache.report.render import FigureBlock
from balnmp_cache.report.training import TrainingCurves, training_figure
from balnmp_cache.report.uncertainty import SplitCurves

__all__ = ["band_figures", "calibration_figures", "ovr_figures", "training_figures"]

Record = Mapping[str, Any]


def _label(run: RunPredictions, short: dict[str, str] | None = None) -> str:
    return (short or {}).get(run.name, run.name) + (" [random encoder]" if run.info.random_weights else "")


def _group_key(group: Sequence[RunPredictions]) -> tuple[str, str]:
    info = group[0].info
    key = f"task{info.task}" if info.task is not None else f"{group[0].n_classes}class"
    return key, info.task_name or key


def _ci(value: float | None, ci: Sequence[float] | None, name: str) -> str:
    if value is None:
        return f"{name} undefined"
    return f"{name} {value:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")


def _curve(
    run: RunPredictions, split: str, rows: Sequence[Record], curves: SplitCurves, kind: str, short: dict[str, str]
) -> Curve:
    first = rows[0] if rows else {}
    if kind == "roc":
        text = _ci(first.get("auc"), first.get("auc_ci"), "AUC")
        points = [(r["threshold_rule"], 1 - r["spec"], r["sens"]) for r in rows
                  if r["spec"] is not None and r["sens"] is not None]
        band = curves.roc
    else:
        text = _ci(curves.record.get("ap"), curves.record.get("ap_ci"), "AP")
        points = [(r["threshold_rule"], r["sens"], r["ppv"]) for r in rows if r["sens"] is not None and r["ppv"]]
        band = curves.pr
    return Curve(f"{_label(run, short)}: {text}", curves.labels, curves.scores, band, points)


def band_figures(
    runs: Sequence[RunPredictions],
    metrics: Sequence[Record],
    curves: Mapping[tuple[str, str], SplitCurves],
    *,
    out: Path,
    formats: Sequence[str],
    alpha: float,
    n_boot: int,
) -> dict[str, list[FigureBlock]]:
    """``{"roc": [...], "pr": [...]}``: per group of comparable binary runs and split, the runs with their bands."""
    level = round(100 * (1 - alpha))
    note = f"shaded: pointwise {level}% bootstrap band ({n_boot} stratified resamples)"
    blocks: dict[str, list[FigureBlock]] = {"roc": [], "pr": []}
    for group in group_runs([r for r in runs if r.is_binary]):
        key, name = _group_key(group)
        short = short_names([r.name for r in group])
        for split in SPLITS:
            members = [r for r in group if split in r.splits]
            if not members:
                continue
            rows = {r.name: [m for m in metrics if m["run"] == r.name and m["split"] == split] for r in members}
            for kind, word in (("roc", "ROC"), ("pr", "Precision-recall")):
                drawn = [_curve(r, split, rows[r.name], curves[(r.name, split)], kind, short) for r in members]
                title = f"{word}, {name}, {SPLIT_LABELS[split]}"
                fig = band_figure(drawn, kind=kind, title=title, band_note=note)
                paths, png = save_figure(fig, out, f"{kind}_{safe_stem(key)}_{split}", formats)
                blocks[kind].append(FigureBlock(title, paths, png))
    return blocks


def calibration_figures(
    runs: Sequence[RunPredictions],
    curves: Mapping[tuple[str, str], SplitCurves],
    *,
    out: Path,
    formats: Sequence[str],
) -> list[FigureBlock]:
    """Per group of comparable binary runs: the reliability diagrams and score histograms of the test split."""
    blocks = []
    for group in group_runs([r for r in runs if r.is_binary]):
        key, name = _group_key(group)
        short = short_names([r.name for r in group])
        split = "test" if any("test" in r.splits for r in group) else group[0].splits[-1]
        panels = [
            CalibrationPanel(_label(r, short), c.labels, c.scores, c.record, r.classes)
            for r in group if (c := curves.get((r.name, split))) is not None
        ]
        if not panels:
            continue
        title = f"Calibration, {name}, {SPLIT_LABELS[split]}: bins of predicted probability (patients per bin)"
        paths, png = save_figure(calibration_figure(panels, title=title), out,
                                 f"calibration_{safe_stem(key)}_{split}", formats)
        blocks.append(FigureBlock(title, paths, png))
    return blocks


def training_figures(
    runs: Sequence[RunPredictions], training: Sequence[TrainingCurves], *, out: Path, formats: Sequence[str]
) -> list[FigureBlock]:
    """Per group of comparable runs with curves: loss and validation AUC per epoch, the selected epoch marked."""
    by_run = {t.run: t for t in training}
    blocks = []
    for group in group_runs(list(runs)):
        items = [by_run[r.name] for r in group if r.name in by_run]
        if not items:
            continue
        key, name = _group_key(group)
        title = f"Training curves, {name} (dotted line: the selected epoch)"
        fig = training_figure(items, title=title, names=short_names([t.run for t in items]))
        paths, png = save_figure(fig, out, f"training_{safe_stem(key)}", formats)
        blocks.append(FigureBlock(title, paths, png))
    return blocks


def _ovr_curves(run: RunPredictions, split: str, *, n_boot: int, seed: int, alpha: float) -> list[Curve]:
    labels, probabilities = run.labels(split), run.probabilities(split)
    resamples = stratified_resamples(labels, n_boot=n_boot, seed=seed)
    drawn = []
    for c, name in enumerate(run.classes):
        positive = (labels == c).astype(np.int64)
        auc = mann_whitney_auc(labels == c, probabilities[:, c])
        band = roc_band(positive, probabilities[:, c], resamples, alpha=alpha) if auc is not None else None
        text = f"{name} vs rest: AUC " + ("undefined" if auc is None else f"{auc:.3f}")
        drawn.append(Curve(text, positive, probabilities[:, c], band))
    return drawn


def ovr_figures(
    runs: Sequence[RunPredictions], *, out: Path, formats: Sequence[str], n_boot: int, seed: int, alpha: float
) -> list[FigureBlock]:
    """Per multi-class run: one panel per split with the one-vs-rest ROC of each class and its band."""
    blocks = []
    for run in runs:
        if run.is_binary:
            continue
        fig, axes = panel_grid(len(run.splits), width=4.8, height=6.0)
        for ax, split in zip(axes, run.splits, strict=True):
            draw_panel(ax, _ovr_curves(run, split, n_boot=n_boot, seed=seed, alpha=alpha), kind="roc", offset=0)
            ax.set_title(SPLIT_LABELS[split], fontsize=9)
        title = f"One-vs-rest ROC per class, {_label(run)} (shaded: pointwise bootstrap band)"
        fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        fig.subplots_adjust(bottom=0.3)  # room for the legends below the axes
        paths, png = save_figure(fig, out, f"roc_ovr_{safe_stem(run.name)}", formats)
        blocks.append(FigureBlock(title, paths, png))
    return blocks
