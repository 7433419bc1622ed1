"""The report's nucleus-morphometry section, self-contained: :func:`nuclei_section` builds it from the
``nuclei`` stage's output (``summaries.csv``), the cohort's ALN status and, when one of the reported runs
was trained on the nucleus bags, that run's attention per feature.

It writes ``nuclei_stats.csv`` / ``.json`` (one record per feature,
:func:`~balnmp_cache.nuclei.stats.compare_features`), ``nuclei_attention.csv``,
``nuclei_attention_per_patient.csv`` and the figures ``nuclei_features.<fmt>`` (a box plot over a violin per feature
and class) and ``nuclei_attention.<fmt>``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.errors import ReportInputError
from balnmp_cache.nuclei.stats import FEATURES, POSITIVE, attention_by_feature, compare_features
from balnmp_cache.report.figures import save_figure
from balnmp_cache.report.render import FigureBlock, Section, TableBlock, fmt_p, fmt_value, write_csv, write_json

if TYPE_CHECKING:
    import pandas as pd

    from balnmp_cache.report.predictions import RunPredictions

__all__ = ["NucleiSection", "nuclei_section"]

log = logging.getLogger(__name__)

_TITLES = {
    "major_axis": "major axis", "minor_axis": "minor axis", "area": "area", "orientation": "orientation order",
    "circumference": "circumference", "density": "density", "circularity": "circularity",
    "rectangularity": "rectangularity",
}  # fmt: skip
_PAPER = {"density": "higher, p = 0.015", "orientation": "higher, p = 0.012", "circumference": "lower, p = 0.009",
          "circularity": "lower, p = 0.010", "area": "lower, p = 0.024", "major_axis": "n.s., p = 0.083",
          "minor_axis": "n.s., p = 0.065", "rectangularity": "–"}  # fmt: skip


@dataclass
class NucleiSection:
    """The section and what it wrote."""

    section: Section
    records: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def _unit(feature: str, units: str) -> str:
    um = units == "um"
    return {"area": " (µm²)" if um else " (px²)", "density": " (per mm²)" if um else " (per 10⁶ px²)",
            "major_axis": " (µm)" if um else " (px)", "minor_axis": " (µm)" if um else " (px)",
            "circumference": " (µm)" if um else " (px)"}.get(feature, "")  # fmt: skip


_DIGITS = {"density": 0, "area": 1, "major_axis": 2, "minor_axis": 2, "circumference": 2}  # else 3


def _iqr(record: dict[str, Any], group: str) -> str:
    """``median (q1–q3)`` of one group of a record, to the feature's precision."""
    digits = _DIGITS.get(record["feature"], 3)
    median, q1, q3 = (fmt_value(record[f"{k}_{group}"], digits) for k in ("median", "q1", "q3"))
    return f"{median} ({q1}–{q3})"


def _stats_table(records: Sequence[dict[str, Any]], units: str) -> TableBlock:
    rows = []
    for r in records:
        rows.append([_TITLES[r["feature"]] + _unit(r["feature"], units), _iqr(r, "n0"), _iqr(r, "npos"),
                     fmt_value(r["rank_biserial"], 2), fmt_p(r["p"]), fmt_p(r.get("p_holm")), fmt_p(r.get("p_bh")),
                     _PAPER[r["feature"]]])  # fmt: skip
    n0, npos = (records[0]["n_n0"], records[0]["n_npos"]) if records else (0, 0)
    return TableBlock(
        f"Per-WSI nucleus features, N0 (n = {n0}) vs N(+) (n = {npos}): median (IQR)",
        ["feature", "N0", "N(+)", "rank-biserial r", "p (Mann–Whitney)", "p Holm", "p BH", "paper (N(+) vs N0)"],
        rows,
        note="r > 0: N(+) higher. Holm and Benjamini–Hochberg adjust over the eight features. A patient's slides "
        "are averaged first.",
    )  # fmt: skip


def _three_class_table(records: Sequence[dict[str, Any]], units: str) -> TableBlock:
    rows = [[_TITLES[r["feature"]] + _unit(r["feature"], units), _iqr(r, "n0"), _iqr(r, "n12"), _iqr(r, "ngt2"),
             fmt_p(r["p_kw"]), fmt_p(r.get("p_kw_holm")), fmt_p(r.get("p_kw_bh"))] for r in records]  # fmt: skip
    sizes = [records[0].get(f"n_{g}", 0) for g in ("n0", "n12", "ngt2")] if records else [0, 0, 0]
    return TableBlock(
        f"The 3-class task, N0 (n = {sizes[0]}) / N+(1-2) (n = {sizes[1]}) / N+(>2) (n = {sizes[2]}): median (IQR)",
        ["feature", "N0", "N+(1-2)", "N+(>2)", "p (Kruskal–Wallis)", "p Holm", "p BH"],
        rows,
        note="Holm and Benjamini–Hochberg adjust over the eight features.",
    )  # fmt: skip


def _feature_figure(frame: pd.DataFrame, status: pd.Series, out: Path, formats: Sequence[str]) -> FigureBlock:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 10.5))  # two columns: readable at the report's figure width
    axes = fig.subplots(4, 2)
    classes = ["N0", *POSITIVE]
    colours = ["#4c78a8", "#f58518", "#e45756"]
    for ax, feature in zip(axes.ravel(), FEATURES, strict=True):
        data = [frame.loc[(status == c).to_numpy(), feature].dropna().to_numpy() for c in classes]
        shown = [(i, d) for i, d in enumerate(data) if len(d) > 1]
        if shown:
            parts = ax.violinplot([d for _, d in shown], positions=[i for i, _ in shown], showextrema=False)
            for body, (i, _) in zip(parts["bodies"], shown, strict=True):
                body.set_facecolor(colours[i])
                body.set_alpha(0.35)
        ax.boxplot([d for d in data], positions=range(len(classes)), widths=0.25, showfliers=False)
        for i, d in enumerate(data):
            ax.scatter(np.full(len(d), i) + np.linspace(-0.08, 0.08, len(d)), d, s=5, color=colours[i], zorder=3)
        ax.set_xticks(range(len(classes)), classes, fontsize=10)
        ax.set_title(_TITLES[feature], fontsize=11)
        ax.tick_params(axis="y", labelsize=9)
    fig.suptitle("Per-WSI nucleus features by ALN status", fontsize=12)
    fig.tight_layout()
    files, png = save_figure(fig, out, "nuclei_features", formats)
    return FigureBlock("Per-WSI nucleus features by ALN status (violin, box, patients)", files, png)


def _attention_figure(table: pd.DataFrame, out: Path, formats: Sequence[str]) -> FigureBlock:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    ordered = table.sort_values("all")
    classes = [c for c in ordered.columns if c not in ("feature", "all")]
    height = 0.8 / max(len(classes), 1)
    for k, label in enumerate(classes):
        ax.barh(np.arange(len(ordered)) + k * height, ordered[label], height=height, label=label)
    ax.set_yticks(np.arange(len(ordered)) + 0.4 - height / 2, [f.replace("_", " ") for f in ordered["feature"]])
    ax.axvline(1 / len(ordered), color="grey", lw=0.8, ls="--")
    ax.set_xlabel("mean attention per patient (dashed: uniform)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    files, png = save_figure(fig, out, "nuclei_attention", formats)
    return FigureBlock("Attention per nucleus feature, mean over patients of each class", files, png)


def _attention(runs: Sequence[RunPredictions]) -> tuple[str, pd.DataFrame, pd.DataFrame] | None:
    """The first run trained on nucleus bags: its name, attention.csv and predictions."""
    from balnmp_cache.runs import read_attention

    for run in runs:
        if run.info.encoder == "nuclei":
            return run.name, read_attention(run.path.parent), run.table
    return None


def nuclei_section(
    nuclei_dir: Path, *, cohort: pd.DataFrame | None, runs: Sequence[RunPredictions], out: Path,
    formats: Sequence[str],
) -> NucleiSection:
    """The nucleus-morphometry section (see the module docstring).

    Raises:
        ReportInputError: ``nuclei_dir`` has no ``summaries.csv``.
    """
    import pandas as pd

    path = Path(nuclei_dir) / "summaries.csv"
    if not path.is_file():
        raise ReportInputError(
            f"{path} does not exist; run balnmp-cache nuclei (with bags on) and pass its --out as --nuclei"
        )
    if cohort is None:
        return NucleiSection(Section("Nucleus morphometry", ["Needs the cohort's ALN status (--clinical): skipped."]))
    summary = pd.read_csv(path, dtype={"patient_id": str, "slide_id": str})
    status = cohort["aln_status"].rename(index=str)
    records = compare_features(summary, status)
    units = str(summary["units"].iloc[0]) if len(summary) else "um"
    result = NucleiSection(Section("Nucleus morphometry (§2.4)", []), records)
    result.files["nuclei_stats.csv"] = write_csv(records, out / "nuclei_stats.csv")
    result.files["nuclei_stats.json"] = write_json(records, out / "nuclei_stats.json")
    blocks = result.section.blocks
    blocks.append(_stats_table(records, units))
    blocks.append(_three_class_table(records, units))
    frame = summary.groupby("patient_id")[list(FEATURES)].mean()
    blocks.append(_feature_figure(frame, status.reindex(frame.index), out, formats))
    found = _attention(runs)
    if found is None:
        blocks.append("No reported run was trained on the nucleus bags: no attention ranking.")
    else:
        name, attention, predictions = found
        labels = status.reindex(predictions["patient_id"].astype(str).unique()).dropna()
        per_patient, table = attention_by_feature(attention, labels)
        result.files["nuclei_attention.csv"] = write_csv(table.to_dict("records"), out / "nuclei_attention.csv")
        per_patient_path = out / "nuclei_attention_per_patient.csv"
        result.files[per_patient_path.name] = write_csv(per_patient.reset_index().to_dict("records"), per_patient_path)
        rows = [[r["feature"].replace("_", " "), *(fmt_value(r[c], 3) for c in table.columns[1:])]
                for r in table.to_dict("records")]  # fmt: skip
        blocks.append(TableBlock(f"Attention per feature of run {name} (mean per patient, then per class)",
                                 ["feature", *table.columns[1:]], rows))  # fmt: skip
        blocks.append(_attention_figure(table, out, formats))
    result.files.update({p.name: p for b in blocks if isinstance(b, FigureBlock) for p in b.files})
    return result
