"""``balnmp-cache report``: read the runs, compute every statistic, write tables, figures and the report."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.config import save_resolved
from balnmp_cache.errors import ConfigError
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.report import document
from balnmp_cache.report.binary import METRIC_KEYS, evaluate_binary
from balnmp_cache.report.compare import COMPARISON_KEYS, compare_runs, group_runs
from balnmp_cache.report.config import ReportConfig
from balnmp_cache.report.figures import RocCurve, confusion_figure, roc_figure, safe_stem, save_figure
from balnmp_cache.report.multiclass import evaluate_multiclass
from balnmp_cache.report.predictions import SPLIT_LABELS, SPLITS, RunPredictions, load_runs
from balnmp_cache.report.render import Document, FigureBlock, Section, to_html, to_markdown, write_csv, write_json
from balnmp_cache.report.subgroups import SUBGROUP_KEYS, subgroup_records
from balnmp_cache.report.table1 import TABLE1_KEYS, cohort_groups, table1

if TYPE_CHECKING:
    import pandas as pd
    from rich.table import Table

__all__ = ["ReportResult", "run_report"]

log = logging.getLogger(__name__)


@dataclass
class ReportResult:
    """Everything ``run_report`` computed and wrote.

    Attributes:
        out: the output directory.
        runs: run names in input order.
        random_weight_runs: runs whose features came from a randomly initialised encoder.
        metrics: ``metrics.json`` records (binary runs).
        comparisons: ``comparisons.json`` records.
        multiclass: ``multiclass.json`` records (runs with more than two classes).
        subgroups: ``subgroups.json`` records (empty without a cohort).
        table1: Table 1 rows (empty without a cohort).
        files: output name -> path of every file written.
        warnings: sentences the user should see (random encoders, threshold fallbacks, missing patients).
        alpha: 1 - confidence level.
    """

    out: Path
    runs: list[str]
    random_weight_runs: list[str] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    multiclass: list[dict[str, Any]] = field(default_factory=list)
    subgroups: list[dict[str, Any]] = field(default_factory=list)
    table1: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    alpha: float = 0.05

    def console_table(self) -> Table:
        """Headline metrics per run × split × rule (AUC with its interval, ACC, SENS, SPEC) for the terminal."""
        from rich.table import Table
        from rich.text import Text

        from balnmp_cache.report.render import fmt_estimate, fmt_value

        table = Table(title=f"balnmp-cache report ({100 * (1 - self.alpha):g}% CI) — {self.out}")
        for column in ("Run", "Split", "Rule", "Threshold", "n", "AUC (CI)", "ACC", "SENS", "SPEC"):
            table.add_column(column, justify="left" if column in ("Run", "Split", "Rule") else "right")

        def run_cell(name: str) -> Text:
            if name in self.random_weight_runs:
                return Text(f"{name} ⚠ random encoder", style="bold red")
            return Text(name)

        for r in self.metrics:
            style = "bold" if r["split"] == "test" else None
            table.add_row(run_cell(r["run"]), SPLIT_LABELS[r["split"]], r["threshold_rule"], f"{r['threshold']:.3f}", str(r["n"]),
                          fmt_estimate(r["auc"], r["auc_ci"]), *(fmt_estimate(r[m], r[f"{m}_ci"]) for m in ("acc", "sens", "spec")),
                          style=style)  # fmt: skip
        for r in self.multiclass:
            style = "bold" if r["split"] == "test" else None
            table.add_row(run_cell(r["run"]), SPLIT_LABELS[r["split"]], "argmax", "–", str(r["n"]),
                          f"{fmt_value(r['macro_auc'])} (macro)", fmt_estimate(r["acc"], r["acc_ci"]), "–", "–", style=style)  # fmt: skip
        return table


def _prediction_splits(runs: Sequence[RunPredictions]) -> pd.Series:
    import pandas as pd

    frames = [run.table[["patient_id", "split"]] for run in runs]
    merged = pd.concat(frames).drop_duplicates("patient_id")
    return pd.Series(merged["split"].to_numpy(dtype=object), index=merged["patient_id"].astype(str).to_numpy())


def _roc_figures(runs: Sequence[RunPredictions], metrics: Sequence[dict[str, Any]], out: Path, formats: Sequence[str]) -> list[FigureBlock]:
    auc_of = {(r["run"], r["split"]): r["auc"] for r in metrics}
    blocks = []
    groups = [[r for r in group if r.is_binary] for group in group_runs(runs)]
    for group in filter(None, groups):
        info = group[0].info
        key = f"task{info.task}" if info.task is not None else f"{group[0].n_classes}class"
        for split in SPLITS:
            members = [r for r in group if split in r.splits]
            if not members:
                continue
            curves = [RocCurve(r.name + (" [random encoder]" if r.info.random_weights else ""), r.labels(split), r.scores(split),
                               auc_of.get((r.name, split))) for r in members]  # fmt: skip
            title = f"ROC, {info.task_name or key}, {SPLIT_LABELS[split]}"
            fig = roc_figure(curves, title=title)
            paths, png = save_figure(fig, out, f"roc_{safe_stem(key)}_{split}", formats)
            blocks.append(FigureBlock(title, paths, png))
    return blocks


def _confusion_figures(runs: Sequence[RunPredictions], metrics: Sequence[dict[str, Any]], multiclass: Sequence[dict[str, Any]],
                       out: Path, formats: Sequence[str]) -> list[FigureBlock]:  # fmt: skip
    blocks = []
    for run in runs:
        if run.is_binary:
            chosen = [r for r in metrics if r["run"] == run.name]
            panels = [(f"{SPLIT_LABELS[r['split']]}, " + ("threshold 0.5" if r["threshold_rule"] == "0.5" else f"Youden {r['threshold']:.3g}"),
                       np.array([[r["tn"], r["fp"]], [r["fn"], r["tp"]]])) for r in chosen]  # fmt: skip
        else:
            panels = [(f"{SPLIT_LABELS[r['split']]}, argmax", np.array(r["confusion"])) for r in multiclass if r["run"] == run.name]
        if not panels:
            continue
        title = f"Confusion matrices, {run.name}" + (" [random encoder]" if run.info.random_weights else "")
        fig = confusion_figure(panels, classes=run.classes, title=title, ncols=len(run.splits))
        paths, png = save_figure(fig, out, f"confusion_{safe_stem(run.name)}", formats)
        blocks.append(FigureBlock(title, paths, png))
    return blocks


def _load_cohort_table(path: Path) -> pd.DataFrame:
    from balnmp_cache.cohort import load_cohort

    return load_cohort(path).table


def run_report(
    paths: Sequence[Path],
    *,
    config: ReportConfig,
    progress: ProgressCallback | None = None,
    cohort: pd.DataFrame | None = None,
) -> ReportResult:
    """Compute the report of one or more runs and write it into ``config.out``.

    Args:
        paths: run directories or ``predictions.csv`` files; empty uses ``config.paths``.
        config: the report configuration (``stages/report.toml`` plus CLI flags).
        progress: optional progress callback (task ``"report"``, one step per stage).
        cohort: an already loaded cohort table (``load_cohort(...).table``); overrides ``config.clinical``.

    Returns:
        The records, the paths written and the warnings.

    Raises:
        ConfigError: no runs were given.
        ReportInputError: a predictions file is invalid, or runs of one task hold different patients.
    """
    paths = [Path(p) for p in paths] or list(config.paths)
    if not paths:
        raise ConfigError("no runs to report: pass run directories or predictions.csv files as PATH, or set 'paths' in stages/report.toml")
    config = config.model_copy(update={"paths": paths})
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    emit(progress, "start", "report", total=6)
    runs = load_runs(paths)
    result = ReportResult(out=out, runs=[r.name for r in runs], alpha=config.alpha)
    for run in runs:
        if run.info.random_weights:
            result.random_weight_runs.append(run.name)
            result.warnings.append(
                f"run {run.name} uses features from a randomly initialised encoder ({run.info.encoder or 'encoder unknown'}, "
                "weights = random): its metrics say nothing about the method"
            )
    emit(progress, "advance", "report", steps=1, info={"runs": len(runs)})

    result.metrics, thresholds = evaluate_binary(runs, rules=config.thresholds, alpha=config.alpha)
    result.warnings += [f"run {name}: Youden {t['youden'].note}" for name, t in thresholds.items() if "youden" in t and t["youden"].fell_back]
    result.multiclass = evaluate_multiclass(runs, alpha=config.alpha)
    result.comparisons = compare_runs(runs)
    emit(progress, "advance", "report", steps=1)

    if cohort is None and config.clinical is not None:
        cohort = _load_cohort_table(Path(config.clinical))
    subgroup_warnings: list[str] = []
    table1_warnings: list[str] = []
    if cohort is not None:
        result.subgroups, subgroup_warnings = subgroup_records(
            runs, cohort, thresholds=thresholds, alpha=config.alpha, age_cutoff=config.age_cutoff,
            t_stage_cutoff_cm=config.t_stage_cutoff_cm,
        )  # fmt: skip
        groups = cohort_groups(cohort, fallback=_prediction_splits(runs))
        result.table1, table1_warnings = table1(cohort, groups=groups, t_stage_cutoff_cm=config.t_stage_cutoff_cm,
                                                extra_columns=config.table1_columns)  # fmt: skip
        result.warnings += subgroup_warnings + table1_warnings
    emit(progress, "advance", "report", steps=1)

    figures = _roc_figures(runs, result.metrics, out, config.figure_formats)
    figures += _confusion_figures(runs, result.metrics, result.multiclass, out, config.figure_formats)
    for block in figures:
        for path in block.files:
            result.files[path.name] = path
    emit(progress, "advance", "report", steps=1, info={"figures": len(figures)})

    files = result.files
    files["metrics.json"] = write_json(result.metrics, out / "metrics.json")
    files["comparisons.json"] = write_json(result.comparisons, out / "comparisons.json")
    files["metrics.csv"] = write_csv(result.metrics, out / "metrics.csv", columns=METRIC_KEYS)
    files["comparisons.csv"] = write_csv(result.comparisons, out / "comparisons.csv", columns=COMPARISON_KEYS)
    if result.multiclass:
        files["multiclass.json"] = write_json(result.multiclass, out / "multiclass.json")
        flat = [{**{k: v for k, v in r.items() if k not in ("per_class", "classes", "confusion")}, **c,
                 "confusion": r["confusion"]} for r in result.multiclass for c in r["per_class"]]  # fmt: skip
        files["multiclass.csv"] = write_csv(flat, out / "multiclass.csv")
    if cohort is not None:
        files["subgroups.json"] = write_json(result.subgroups, out / "subgroups.json")
        files["subgroups.csv"] = write_csv(result.subgroups, out / "subgroups.csv", columns=SUBGROUP_KEYS)
        files["table1.csv"] = write_csv(result.table1, out / "table1.csv", columns=TABLE1_KEYS)
    emit(progress, "advance", "report", steps=1)

    flagged = set(result.random_weight_runs)
    doc = Document("BALNMP report: " + ", ".join(result.runs), banners=list(result.warnings))
    doc.sections.append(document.runs_section(runs))
    if result.metrics:
        doc.sections.append(document.metrics_section(result.metrics, thresholds, rules=config.thresholds, alpha=config.alpha, flagged=flagged))
        doc.sections.append(document.comparisons_section(result.comparisons, flagged=flagged))
    if result.multiclass:
        doc.sections.append(document.multiclass_section(result.multiclass, alpha=config.alpha, flagged=flagged))
    if cohort is not None:
        if result.subgroups:
            doc.sections.append(document.subgroups_section(result.subgroups, rules=config.thresholds, alpha=config.alpha,
                                                           warnings=subgroup_warnings, flagged=flagged))  # fmt: skip
        doc.sections.append(document.table1_section(result.table1, warnings=table1_warnings))
    else:
        doc.sections.append(Section("Subgroups and Table 1", ["No cohort was given (--clinical / key 'clinical'): skipped."]))
    doc.sections.append(Section("Figures", list(figures)))
    tables = [name for name in files if name.endswith(".csv")]
    doc.sections.append(Section("Files", ["Tables: " + ", ".join(tables) + ". Records: metrics.json, comparisons.json."]))
    (out / "report.md").write_text(to_markdown(doc, out), encoding="utf-8")
    (out / "report.html").write_text(to_html(doc), encoding="utf-8")
    files["report.md"], files["report.html"] = out / "report.md", out / "report.html"
    files["config.toml"] = save_resolved(config, out)
    emit(progress, "advance", "report", steps=1)
    emit(progress, "end", "report")
    for warning in result.warnings:
        log.warning(warning)
    log.info("report of %d run(s) written to %s", len(runs), out)
    return result
