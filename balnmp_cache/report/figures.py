"""Figures: confusion matrices, and how every figure is saved (ROC, PR and the rest are in ``gallery``).

Figures are built on :class:`matplotlib.figure.Figure` directly, which renders with the Agg canvas
without touching pyplot's global state or the process-wide backend.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.fsio import atomic_path, atomic_write_bytes
from balnmp_cache.report.predictions import SPLIT_LABELS, RunPredictions
from balnmp_cache.report.render import FigureBlock

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["confusion_figure", "confusion_figures", "safe_stem", "save_figure"]

Record = Mapping[str, Any]

_DPI = 110


def safe_stem(text: str) -> str:
    """A file-name-safe version of ``text`` (letters, digits, ``-``, ``_``, ``.``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "figure"


def confusion_figure(
    panels: Sequence[tuple[str, np.ndarray]], *, classes: Sequence[str], title: str, ncols: int
) -> Figure:
    """A grid of confusion matrices (rows: true class, columns: predicted class; counts and row percentages).

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
        totals = counts.sum(axis=1)
        for (i, j), value in np.ndenumerate(counts):
            text = f"{int(value)}\n{100 * value / totals[i]:.0f}%" if totals[i] else str(int(value))  # row %
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if value > peak / 2 else "black")
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
