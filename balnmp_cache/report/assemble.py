"""The report's order for a reader: summary, figures with their tables, the detailed tables, provenance last."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from balnmp_cache.report import document, sections
from balnmp_cache.report.binary import Threshold
from balnmp_cache.report.predictions import RunPredictions
from balnmp_cache.report.provenance import patients_section, provenance_section
from balnmp_cache.report.render import Document, FigureBlock, Section
from balnmp_cache.report.training import TrainingCurves
from balnmp_cache.report.uncertainty import SplitCurves

if TYPE_CHECKING:
    from balnmp_cache.report.config import ReportConfig
    from balnmp_cache.report.run import ReportResult

__all__ = ["Parts", "build_document"]


@dataclass
class Parts:
    """What the document is built from besides :class:`~balnmp_cache.report.run.ReportResult`'s records.

    Attributes:
        thresholds: ``{run: {rule: Threshold}}``.
        curves: ``{(run, split): SplitCurves}`` of the binary runs (bands, calibration).
        figures: ``roc``, ``pr``, ``calibration``, ``training``, ``confusion``, ``ovr`` -> figure blocks.
        training: each run's curves and selection.
        cohort_warnings: ``(subgroup, Table 1, Table 1 by ALN)`` warnings, ``None`` without a cohort.
    """

    thresholds: dict[str, dict[str, Threshold]]
    curves: dict[tuple[str, str], SplitCurves] = field(default_factory=dict)
    figures: dict[str, list[FigureBlock]] = field(default_factory=dict)
    training: list[TrainingCurves] = field(default_factory=list)
    cohort_warnings: tuple[list[str], list[str], list[str]] | None = None


def _cohort_sections(result: ReportResult, parts: Parts, config: ReportConfig) -> list[Section]:
    if parts.cohort_warnings is None:
        return [Section("Subgroups and Table 1", ["No cohort was given (--clinical / key 'clinical'): skipped."])]
    subgroup_warnings, table1_warnings, aln_warnings = parts.cohort_warnings
    found = []
    if result.subgroups:
        found.append(document.subgroups_section(result.subgroups, rules=config.thresholds, alpha=config.alpha,
                                                warnings=subgroup_warnings, flagged=set(result.random_weight_runs)))
    found.append(document.table1_section(result.table1, warnings=table1_warnings, by_aln=result.table1_by_aln,
                                         aln_warnings=aln_warnings))
    return found


def _figures(title: str, blocks: Sequence[FigureBlock], intro: str) -> Section | None:
    return Section(title, [intro, *blocks]) if blocks else None


def build_document(
    result: ReportResult, runs: Sequence[RunPredictions], parts: Parts, *, config: ReportConfig
) -> Document:
    """The whole report as a :class:`Document` (rendered to ``report.md`` and ``report.html``)."""
    flagged = set(result.random_weight_runs)
    rules, alpha, rule = config.thresholds, config.alpha, config.thresholds[0]
    figures = parts.figures
    level = f"{100 * (1 - alpha):g}%"
    names = ", ".join(result.runs) if len(result.runs) <= 4 else f"{len(result.runs)} runs"
    doc = Document(f"BALNMP report: {names}", banners=list(result.warnings))
    candidates: list[Section | None] = [
        sections.summary_section(runs, result.metrics, result.multiclass, rule=rule, alpha=alpha, flagged=flagged),
        sections.seeds_section(result.seeds, rule=rule),
        sections.crossval_section(result.crossval, alpha=alpha),
        _figures("ROC curves", figures.get("roc", []),
                 f"Shaded: pointwise {level} band (stratified bootstrap over patients, {config.bootstrap} resamples, "
                 f"seed {config.bootstrap_seed}). Circles: threshold 0.5; diamonds: the Youden cut-off chosen on V."),
        _figures("Precision-recall curves", figures.get("pr", []),
                 "Interpolated precision at each recall with the same bootstrap band; markers as in the ROC figures."),
        sections.calibration_section(result.metrics, figures.get("calibration", []), rule=rule, alpha=alpha,
                                     n_boot=config.bootstrap) if result.metrics else None,
        sections.training_section(parts.training, figures.get("training", [])),
        document.runs_section(runs),
    ]
    if result.metrics:
        candidates.append(document.metrics_section(result.metrics, parts.thresholds, rules=rules, alpha=alpha,
                                                   flagged=flagged))
        candidates.append(document.comparisons_section(result.comparisons, flagged=flagged))
    if result.multiclass:
        section = document.multiclass_section(result.multiclass, alpha=alpha, flagged=flagged)
        section.blocks += figures.get("ovr", [])
        candidates.append(section)
    candidates += _cohort_sections(result, parts, config)
    candidates.append(_figures("Confusion matrices", figures.get("confusion", []),
                               "Counts and row percentages (of the patients of each true class)."))
    doc.sections = [s for s in candidates if s is not None]
    if config.heatmaps is not None:
        from balnmp_cache.heatmap import heatmap_section

        doc.sections.append(heatmap_section(Path(config.heatmaps), report_dir=result.out))
    doc.sections.append(patients_section(result.patients, runs, max_runs=config.patients_table_runs))
    tables = ", ".join(name for name in result.files if name.endswith(".csv"))
    records = ", ".join(name for name in result.files if name.endswith(".json"))
    doc.sections.append(Section("Files", [f"Tables: {tables}. Records: {records}."]))
    doc.sections.append(provenance_section(result.provenance))
    return doc

