"""Training behaviour: each run's ``curves.csv`` (loss and validation AUC per epoch) and its selected epoch.

A run's selection is flagged when the selected epoch is among the first :data:`EARLY_EPOCHS` epochs of
a run that went on for more (the validation AUC peaked before the model had learnt much, or by
chance), or when the validation split is tiny (fewer than :data:`SMALL_VAL_PATIENTS` patients or fewer
than :data:`SMALL_VAL_CLASS` of a class): a selection on few patients is noisy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache import runs as run_dirs
from balnmp_cache.report.plots import DPI, FONT, PALETTE, panel_grid
from balnmp_cache.report.predictions import RunPredictions

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "EARLY_EPOCHS", "SMALL_VAL_CLASS", "SMALL_VAL_PATIENTS", "TrainingCurves", "read_training", "training_figure",
]

log = logging.getLogger(__name__)

EARLY_EPOCHS = 3
SMALL_VAL_PATIENTS = 30
SMALL_VAL_CLASS = 10


@dataclass
class TrainingCurves:
    """One run's curves and selection.

    Attributes:
        run: the run's name.
        curves: ``curves.csv`` (``epoch``, ``train_loss``, ``val_loss``, ``val_auc``, …).
        best_epoch, epochs_run: the selected epoch and the epochs trained (``run.json``, else the curves).
        n_val, n_val_minority: validation patients and those of its smaller class.
        notes: sentences flagging an early selection or a tiny validation split.
    """

    run: str
    curves: pd.DataFrame
    best_epoch: int | None
    epochs_run: int
    n_val: int
    n_val_minority: int
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"run": self.run, "best_epoch": self.best_epoch, "epochs_run": self.epochs_run,
                "n_val": self.n_val, "n_val_minority": self.n_val_minority, "notes": list(self.notes)}


def _best_epoch(run: RunPredictions, curves: pd.DataFrame) -> int | None:
    try:
        record = run_dirs.read_run(run.path.parent)
    except Exception:  # a hand-written or older run.json: fall back to the curves
        record = None
    if record is not None and record.best_epoch is not None:
        return int(record.best_epoch)
    if "best" in curves and curves["best"].astype(str).str.lower().isin(["true", "1"]).any():
        flagged = curves[curves["best"].astype(str).str.lower().isin(["true", "1"])]
        return int(flagged["epoch"].iloc[-1])
    return None


def _notes(best: int | None, epochs: int, n_val: int, minority: int) -> list[str]:
    notes = []
    if best is not None and best <= EARLY_EPOCHS < epochs:
        notes.append(f"selected at epoch {best} of {epochs}: within the first {EARLY_EPOCHS} epochs, the validation "
                     "AUC may have peaked by chance")
    if n_val and (n_val < SMALL_VAL_PATIENTS or minority < SMALL_VAL_CLASS):
        notes.append(f"selected on a small validation split ({n_val} patients, {minority} of the smaller class): "
                     "the choice of epoch is noisy")
    return notes


def read_training(runs: Sequence[RunPredictions]) -> list[TrainingCurves]:
    """The curves of every run whose folder has a ``curves.csv`` (others are skipped)."""
    found = []
    for run in runs:
        path = run_dirs.run_files(run.path.parent).curves
        if not path.is_file():
            continue
        try:
            curves = run_dirs.read_curves(run.path.parent)
        except Exception as err:  # an unreadable curves file costs the figure, not the report
            log.warning("run %s: %s is unreadable (%s): no training curves", run.name, path, err)
            continue
        if "epoch" not in curves or curves.empty:
            continue
        val = run.labels("val") if "val" in run.splits else np.array([], dtype=np.int64)
        minority = int(np.bincount(val, minlength=run.n_classes).min()) if len(val) else 0
        best = _best_epoch(run, curves)
        epochs = int(curves["epoch"].max())
        found.append(TrainingCurves(run.name, curves, best, epochs, len(val), minority,
                                    _notes(best, epochs, len(val), minority)))
    return found


def _panel(ax: Any, item: TrainingCurves, name: str) -> None:
    curves = item.curves
    for column, colour, style, text in (("train_loss", PALETTE[0], "-", "train loss"),
                                        ("val_loss", PALETTE[1], "--", "val loss")):
        if column in curves and curves[column].notna().any():
            ax.plot(curves["epoch"], curves[column], color=colour, linestyle=style, linewidth=1.5, label=text,
                    marker="o" if len(curves) < 3 else None)
    ax.set_xlabel("Epoch", fontsize=FONT)
    ax.set_ylabel("Loss", fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    twin = ax.twinx()
    if "val_auc" in curves and curves["val_auc"].notna().any():
        twin.plot(curves["epoch"], curves["val_auc"], color=PALETTE[2], linewidth=1.5, marker=".", label="val AUC")
    twin.set_ylim(0, 1.02)
    twin.set_ylabel("Validation AUC", fontsize=FONT)
    twin.tick_params(labelsize=FONT - 1)
    if item.best_epoch is not None:
        ax.axvline(item.best_epoch, color="black", linestyle=":", linewidth=1.2, label=f"selected ({item.best_epoch})")
    handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + twin.get_legend_handles_labels()[1]
    ax.legend(handles, labels, fontsize=FONT - 2, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2,
              frameon=False)
    flag = " ⚠" if item.notes else ""
    ax.set_title(f"{name}{flag}\nval n = {item.n_val}", fontsize=FONT - 1)


def training_figure(
    items: Sequence[TrainingCurves], *, title: str, names: Mapping[str, str] | None = None
) -> Figure:
    """Small multiples: loss (train, val) and validation AUC per epoch, the selected epoch marked.

    ``names``: the panel title of each run (default its name).
    """
    fig, axes = panel_grid(len(items), width=4.6, height=4.4)
    for ax, item in zip(axes, items, strict=True):
        _panel(ax, item, (names or {}).get(item.run, item.run))
    fig.suptitle(title, fontsize=FONT + 1)
    fig.set_dpi(DPI)
    fig.tight_layout()
    return fig
