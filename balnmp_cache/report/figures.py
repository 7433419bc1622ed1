"""Figures: ROC curves (several runs overlaid) and confusion matrices.

Figures are built on :class:`matplotlib.figure.Figure` directly, which renders with the Agg canvas
without touching pyplot's global state or the process-wide backend.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.fsio import atomic_path, atomic_write_bytes
from balnmp_cache.report.compare import group_runs
from balnmp_cache.report.predictions import SPLIT_LABELS, SPLITS, RunPredictions
from balnmp_cache.report.render import FigureBlock

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "RocCurve",
    "confusion_figure",
    "confusion_figures",
    "roc_figure",
    "roc_figures",
    "safe_stem",
    "save_figure",
]

Record = Mapping[str, Any]

_DPI = 110


@dataclass(frozen=True)
class RocCurve:
    """One curve of a ROC figure.

    Attributes:
        label: legend text (the run's name).
        labels: ``(n,)`` 0/1 labels.
        scores: ``(n,)`` class-1 probabilities.
        auc: the AUC shown in the legend (``None``: undefined, the curve is not drawn).
    """

    label: str
    labels: np.ndarray
    scores: np.ndarray
    auc: float | None


def safe_stem(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``-``, ``_``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "figure"


def roc_figure(curves: Sequence[RocCurve], *, title: str) -> Figure:
    """ROC curves of several runs on one split, the AUC of each in the legend."""
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    fig = Figure(figsize=(5.2, 5.0), dpi=_DPI)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
    for curve in curves:
        if curve.auc is None:
            ax.plot([], [], label=f"{curve.label} (AUC undefined: one class)")
            continue
        fpr, tpr, _ = roc_curve(curve.labels, curve.scores)
        ax.plot(fpr, tpr, linewidth=1.8, label=f"{curve.label} (AUC {curve.auc:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity", ylabel="Sensitivity", title=title)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def confusion_figure(
    panels: Sequence[tuple[str, np.ndarray]], *, classes: Sequence[str], title: str, ncols: int
) -> Figure:
    """A grid of confusion matrices (rows: true class, columns: predicted class).

    Args:
        panels: ``(subtitle, counts (C, C))`` per panel, filled row by row.
        classes: ``C`` class names.
        title: figure title.
        ncols: panels per row.
    """
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, len(panels)))
    nrows = max(1, -(-len(panels) // ncols))
    size = 1.1 + 0.75 * len(classes)
    fig = Figure(figsize=(size * ncols + 0.4, (size + 0.45) * nrows + 0.4), dpi=_DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_axis_off()
    for ax, (subtitle, counts) in zip(axes.flat, panels, strict=False):
        counts = np.asarray(counts)
        ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
        peak = counts.max() if counts.size else 0
        for (i, j), value in np.ndenumerate(counts):
            ax.text(j, i, str(int(value)), ha="center", va="center", color="white" if value > peak / 2 else "black")
        ticks = range(len(classes))
        ax.set_xticks(ticks, labels=classes, fontsize=7, rotation=30)
        ax.set_yticks(ticks, labels=classes, fontsize=7)
        ax.set_xlabel("Predicted", fontsize=8)
        ax.set_ylabel("True", fontsize=8)
        ax.set_title(subtitle, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, directory: Path, stem: str, formats: Sequence[str]) -> tuple[list[Path], bytes]:
    """Write ``fig`` as ``directory/stem.<fmt>`` for each format (atomically) and return the paths and PNG bytes.

    The PNG bytes are returned even when PNG files are not requested, for embedding in the HTML report.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI)
    png = buffer.getvalue()
    paths = []
    for fmt in formats:
        path = directory / f"{stem}.{fmt}"
        if fmt == "png":
            atomic_write_bytes(path, png)
        else:
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=fmt, metadata={"Date": None})
        paths.append(path)
    return paths, png


def _label(run: RunPredictions) -> str:
    return run.name + (" [random encoder]" if run.info.random_weights else "")


def roc_figures(
    runs: Sequence[RunPredictions], metrics: Sequence[Record], *, out: Path, formats: Sequence[str]
) -> list[FigureBlock]:
    """``roc_<task>_<split>``: per group of comparable binary runs and per split, the runs overlaid."""
    auc_of = {(r["run"], r["split"]): r["auc"] for r in metrics}
    blocks = []
    for group in group_runs([r for r in runs if r.is_binary]):
        info = group[0].info
        key = f"task{info.task}" if info.task is not None else f"{group[0].n_classes}class"
        for split in SPLITS:
            members = [r for r in group if split in r.splits]
            if not members:
                continue
            curves = [
                RocCurve(_label(r), r.labels(split), r.scores(split), auc_of.get((r.name, split))) for r in members
            ]
            title = f"ROC, {info.task_name or key}, {SPLIT_LABELS[split]}"
            paths, png = save_figure(roc_figure(curves, title=title), out, f"roc_{safe_stem(key)}_{split}", formats)
            blocks.append(FigureBlock(title, paths, png))
    return blocks


def _binary_panel(record: Record) -> tuple[str, np.ndarray]:
    rule = "threshold 0.5" if record["threshold_rule"] == "0.5" else f"Youden {record['threshold']:.3g}"
    counts = np.array([[record["tn"], record["fp"]], [record["fn"], record["tp"]]])  # rows true 0/1, columns predicted
    return f"{SPLIT_LABELS[record['split']]}, {rule}", counts


def confusion_figures(
    runs: Sequence[RunPredictions],
    metrics: Sequence[Record],
    multiclass: Sequence[Record],
    *,
    out: Path,
    formats: Sequence[str],
) -> list[FigureBlock]:
    """``confusion_<run>``: splits × threshold rules (binary) or splits with the argmax (multi-class)."""
    blocks = []
    for run in runs:
        if run.is_binary:
            panels = [_binary_panel(r) for r in metrics if r["run"] == run.name]
        else:
            chosen = [r for r in multiclass if r["run"] == run.name]
            panels = [(f"{SPLIT_LABELS[r['split']]}, argmax", np.array(r["confusion"])) for r in chosen]
        if not panels:
            continue
        title = f"Confusion matrices, {_label(run)}"
        fig = confusion_figure(panels, classes=run.classes, title=title, ncols=len(run.splits))
        paths, png = save_figure(fig, out, f"confusion_{safe_stem(run.name)}", formats)
        blocks.append(FigureBlock(title, paths, png))
    return blocks
