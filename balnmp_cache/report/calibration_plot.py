"""The calibration figure: per run, a reliability diagram over the score histograms per class.

The reliability diagram plots each non-empty bin's mean predicted probability against its fraction of
positives, the bin's patient count above the point; the dotted diagonal is perfect calibration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.report.plots import DPI, FONT, PALETTE

if TYPE_CHECKING:
    from matplotlib.figure import Figure, SubFigure

__all__ = ["CalibrationPanel", "calibration_figure"]


@dataclass(frozen=True)
class CalibrationPanel:
    """One run's calibration on one split.

    Attributes:
        title: the run's name.
        labels, scores: ``(n,)`` 0/1 labels and class-1 probabilities.
        record: the split's calibration keys (``brier``, ``brier_ci``, ``calibration_slope``,
            ``calibration_intercept``, ``calibration_bins``).
        classes: the two class names (legend of the histograms).
    """

    title: str
    labels: np.ndarray
    scores: np.ndarray
    record: Mapping[str, Any]
    classes: Sequence[str]


def _text(record: Mapping[str, Any]) -> str:
    def num(key: str) -> str:
        value = record.get(key)
        return "–" if value is None else f"{value:.2f}"

    ci = record.get("brier_ci")
    brier = f"Brier {record['brier']:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
    return f"{brier}\nslope {num('calibration_slope')}, intercept {num('calibration_intercept')}"


def _panel(sub: SubFigure, panel: CalibrationPanel) -> None:
    top, bottom = sub.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    bins = [b for b in panel.record["calibration_bins"] if b["n"]]
    x = [b["mean_predicted"] for b in bins]
    y = [b["fraction_positive"] for b in bins]
    top.plot([0, 1], [0, 1], linestyle=":", color="0.55", linewidth=1)  # perfect calibration
    top.plot(x, y, marker="o", color=PALETTE[0], linewidth=1.6)
    for b in bins:
        top.annotate(str(b["n"]), (b["mean_predicted"], b["fraction_positive"]), textcoords="offset points",
                     xytext=(0, 6), ha="center", fontsize=FONT - 2)
    top.set(xlim=(0, 1), ylim=(-0.02, 1.08), ylabel="Fraction positive")
    top.set_title(panel.title, fontsize=FONT)
    top.text(0.02, 0.97, _text(panel.record), transform=top.transAxes, va="top", fontsize=FONT - 1)
    top.grid(alpha=0.3)
    edges = [b["low"] for b in panel.record["calibration_bins"]] + [1.0]
    for c, colour in ((0, PALETTE[1]), (1, PALETTE[2])):
        name = panel.classes[c] if len(panel.classes) > c else str(c)
        bottom.hist(panel.scores[panel.labels == c], bins=edges, color=colour, alpha=0.55, label=f"true {name}")
    bottom.set(xlabel="Predicted probability of class 1", ylabel="Patients")
    bottom.legend(loc="upper center", fontsize=FONT - 2, ncols=2)
    for ax in (top, bottom):
        ax.tick_params(labelsize=FONT - 1)
        ax.xaxis.label.set_fontsize(FONT)
        ax.yaxis.label.set_fontsize(FONT)


def calibration_figure(panels: Sequence[CalibrationPanel], *, title: str, ncols: int = 3) -> Figure:
    """Small multiples of :class:`CalibrationPanel`, ``ncols`` per row."""
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    fig = Figure(figsize=(4.6 * ncols, 5.4 * nrows + 0.5), dpi=DPI, layout="constrained")
    subs = np.atleast_1d(fig.subfigures(nrows, ncols, squeeze=False)).flatten()
    for sub, panel in zip(subs, panels, strict=False):
        _panel(sub, panel)
    fig.suptitle(title, fontsize=FONT + 1)
    return fig
