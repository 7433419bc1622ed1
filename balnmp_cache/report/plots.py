"""Figures with uncertainty: ROC and PR curves with bootstrap bands, calibration, training curves.

Curves use the Okabe–Ito palette (distinguishable with the common colour-vision deficiencies) and
also differ in line style; a panel holds at most :data:`PER_PANEL` curves, more make small multiples.
Legends sit below the axes so that they never hide a curve.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from balnmp_cache.report.bootstrap import Band, pr_points, roc_points

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["PALETTE", "PER_PANEL", "Curve", "band_figure", "chunks", "draw_panel", "panel_grid", "short_names"]

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
"""Okabe–Ito colours (blue, vermillion, green, purple, orange, sky blue, black)."""
STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)))
PER_PANEL = 6
FONT = 9
DPI = 110


@dataclass(frozen=True)
class Curve:
    """One run's curve on one split.

    Attributes:
        label: legend text (run name and the summary value, e.g. ``AUC 0.81 (0.72–0.88)``).
        labels, scores: ``(n,)`` 0/1 labels and class-1 probabilities.
        band: the pointwise bootstrap band (``None``: not drawn, one class).
        points: operating points ``(name, x, y)``: (1 - SPEC, SENS) for a ROC, (SENS, PPV) for a PR curve.
    """

    label: str
    labels: np.ndarray
    scores: np.ndarray
    band: Band | None
    points: list[tuple[str, float, float]] = field(default_factory=list)


_DIGEST = re.compile(r"^[0-9a-f]{8}$")
MAX_LABEL = 44


def short_names(names: Sequence[str]) -> dict[str, str]:
    """Legend names: each name without the ``-``-separated parts every name shares and without digests.

    ``task0-cacheA-balnmp-image-N10-seed0-1c04c4c2`` beside ``…-seed1-…`` becomes ``cacheA-balnmp-image-seed0``
    when the others share ``task0`` and ``N10``; names longer than :data:`MAX_LABEL` lose their middle to ``…``. The
    full names are unchanged when shortening would make two equal.
    """
    parts = {n: n.split("-") for n in names}
    common = set.intersection(*(set(p) for p in parts.values())) if len(names) > 1 else set()
    short = {}
    for name, tokens in parts.items():
        kept = [t for t in tokens if t not in common and not _DIGEST.match(t)] or tokens
        text = "-".join(kept)
        # too long: keep the start and the end (where folds and seeds are named)
        short[name] = text if len(text) <= MAX_LABEL else text[:14] + "…" + text[15 - MAX_LABEL :]
    return short if len(set(short.values())) == len(short) else {n: n for n in names}


def chunks(items: Sequence[Curve], size: int = PER_PANEL) -> list[Sequence[Curve]]:
    """``items`` cut into consecutive panels of at most ``size``."""
    return [items[i : i + size] for i in range(0, len(items), size)] or [items]


def panel_grid(n_panels: int, *, width: float, height: float, ncols: int = 3) -> tuple[Figure, list[Axes]]:
    """A figure of ``n_panels`` axes, ``ncols`` per row; unused axes are hidden."""
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n_panels))
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=DPI)
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten().tolist()
    for ax in axes[n_panels:]:
        ax.set_axis_off()
    return fig, axes[:n_panels]


_MARKERS = {"0.5": ("o", "threshold 0.5"), "youden": ("D", "Youden")}


def draw_panel(ax: Axes, curves: Sequence[Curve], *, kind: str, offset: int) -> None:
    for k, curve in enumerate(curves):
        colour, style = PALETTE[(offset + k) % len(PALETTE)], STYLES[(offset + k) % len(STYLES)]
        if curve.band is None:
            ax.plot([], [], color=colour, label=f"{curve.label} (undefined: one class)")
            continue
        if kind == "roc":
            x, y = roc_points(curve.labels, curve.scores)
            ax.step(x, y, where="post", color=colour, linestyle=style, linewidth=1.8, label=curve.label)
            ax.fill_between(curve.band.grid, curve.band.low, curve.band.high, step="post", color=colour, alpha=0.15)
        else:
            recall, precision = pr_points(curve.labels, curve.scores)
            ax.step(recall, precision, where="pre", color=colour, linestyle=style, linewidth=1.8, label=curve.label)
            ax.fill_between(curve.band.grid, curve.band.low, curve.band.high, color=colour, alpha=0.15)
        for name, px, py in curve.points:
            marker = _MARKERS.get(name, ("s", name))[0]
            ax.plot([px], [py], marker=marker, markersize=7, color=colour, markeredgecolor="black", linestyle="none")
    if kind == "roc":
        ax.plot([0, 1], [0, 1], linestyle=":", color="0.55", linewidth=1)
        ax.set(xlabel="1 - specificity", ylabel="Sensitivity")
    else:
        ax.set(xlabel="Recall (sensitivity)", ylabel="Precision (PPV)")
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=FONT)
    ax.xaxis.label.set_fontsize(FONT + 1)
    ax.yaxis.label.set_fontsize(FONT + 1)
    handles, labels = ax.get_legend_handles_labels()
    for name in sorted({p[0] for c in curves for p in c.points}):
        marker, text = _MARKERS.get(name, ("s", name))
        handles.append(ax.plot([], [], marker=marker, color="white", markeredgecolor="black", linestyle="none")[0])
        labels.append(text)
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=FONT - 1, frameon=False)


def band_figure(curves: Sequence[Curve], *, kind: str, title: str, band_note: str) -> Figure:
    """ROC (``kind="roc"``) or PR (``"pr"``) curves with their bands, :data:`PER_PANEL` per panel."""
    panels = chunks(curves)
    legend_rows = max(len(p) for p in panels) + 1
    fig, axes = panel_grid(len(panels), width=4.8, height=4.7 + 0.3 * legend_rows)
    for i, (ax, members) in enumerate(zip(axes, panels, strict=True)):
        draw_panel(ax, members, kind=kind, offset=0)
        if len(panels) > 1:
            ax.set_title(f"runs {i * PER_PANEL + 1}–{i * PER_PANEL + len(members)}", fontsize=FONT)
    fig.suptitle(f"{title}\n{band_note}", fontsize=FONT + 1)
    fig.tight_layout()
    return fig
