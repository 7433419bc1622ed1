"""``balnmp-cache report``: read the runs, compute every statistic, write tables, figures and the report."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from balnmp_cache.config import save_resolved
from balnmp_cache.errors import ConfigError
from balnmp_cache.fsio import atomic_write_text
from balnmp_cache.outdir import recover, staged_dir
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.report import document
from balnmp_cache.report.binary import METRIC_KEYS, Threshold, evaluate_binary
from balnmp_cache.report.compare import COMPARISON_KEYS, compare_runs
from balnmp_cache.report.config import ReportConfig
from balnmp_cache.report.figures import confusion_figures, roc_figures
from balnmp_cache.report.multiclass import evaluate_multiclass
from balnmp_cache.report.predictions import RunPredictions, load_runs
from balnmp_cache.report.render import Document, FigureBlock, Section, to_html, to_markdown, write_csv, write_json
from balnmp_cache.report.subgroups import SUBGROUP_KEYS, subgroup_records
from balnmp_cache.report.table1 import TABLE1_KEYS, cohort_groups, table1

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["REPORT_FILE", "ReportResult", "run_report"]

log = logging.getLogger(__name__)

REPORT_FILE = re.compile(
    r"^(?:(?:metrics|comparisons|multiclass|subgroups)\.(?:json|csv)|table1\.csv|(?:roc|confusion)_.+\.(?:png|svg)"
    r"|nuclei_.+\.(?:json|csv|png|svg)|report\.(?:md|html|log)|config\.toml)$"
)
"""The names of the files a report writes (``report.log``: where older versions kept the log)."""


@dataclass
class ReportResult:
    """Everything ``run_report`` computed and wrote (data only; the CLI renders it).

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


def _prediction_splits(runs: Sequence[RunPredictions]) -> pd.Series:
    """Split per patient id as the runs' predictions give it (the first run that has the patient wins)."""
    import pandas as pd

    merged = pd.concat([run.table[["patient_id", "split"]] for run in runs]).drop_duplicates("patient_id")
    return pd.Series(merged["split"].to_numpy(dtype=object), index=merged["patient_id"].astype(str).to_numpy())


def _load_cohort_table(path: Path) -> pd.DataFrame:
    from balnmp_cache.cohort import load_cohort

    return load_cohort(path).table


def _flag_random_encoders(result: ReportResult, runs: Sequence[RunPredictions]) -> None:
    for run in runs:
        if run.info.random_weights:
            result.random_weight_runs.append(run.name)
            result.warnings.append(
                f"run {run.name} uses features from a randomly initialised encoder "
                f"({run.info.encoder or 'encoder unknown'}, weights = random): its metrics say nothing about the method"
            )


def _evaluate(
    result: ReportResult, runs: Sequence[RunPredictions], *, config: ReportConfig
) -> dict[str, dict[str, Threshold]]:
    """Fill the binary, multi-class and comparison records of ``result``; return each run's thresholds."""
    result.metrics, thresholds = evaluate_binary(runs, rules=config.thresholds, alpha=config.alpha)
    for name, by_rule in thresholds.items():
        if "youden" in by_rule and by_rule["youden"].fell_back:
            result.warnings.append(f"run {name}: Youden {by_rule['youden'].note}")
    result.multiclass = evaluate_multiclass(runs, alpha=config.alpha)
    result.comparisons = compare_runs(runs)
    return thresholds


def _figures(result: ReportResult, runs: Sequence[RunPredictions], *, formats: Sequence[str]) -> list[FigureBlock]:
    """Write the ROC and confusion figures into ``result.out`` and record their files."""
    figures = roc_figures(runs, result.metrics, out=result.out, formats=formats)
    figures += confusion_figures(runs, result.metrics, result.multiclass, out=result.out, formats=formats)
    result.files.update({path.name: path for block in figures for path in block.files})
    return figures


def _cohort_records(
    result: ReportResult,
    runs: Sequence[RunPredictions],
    cohort: pd.DataFrame,
    thresholds: dict[str, dict[str, Threshold]],
    *,
    config: ReportConfig,
) -> tuple[list[str], list[str]]:
    """Fill the subgroups and Table 1 of ``result``; return their warnings (also added to ``result``)."""
    result.subgroups, subgroup_warnings = subgroup_records(
        runs,
        cohort,
        thresholds=thresholds,
        alpha=config.alpha,
        age_cutoff=config.age_cutoff,
        t_stage_cutoff_cm=config.t_stage_cutoff_cm,
    )
    groups = cohort_groups(cohort, fallback=_prediction_splits(runs))
    result.table1, table1_warnings = table1(
        cohort, groups=groups, t_stage_cutoff_cm=config.t_stage_cutoff_cm, extra_columns=config.table1_columns
    )
    result.warnings += subgroup_warnings + table1_warnings
    return subgroup_warnings, table1_warnings


def _write_tables(result: ReportResult, *, with_cohort: bool) -> None:
    out, files = result.out, result.files
    files["metrics.json"] = write_json(result.metrics, out / "metrics.json")
    files["comparisons.json"] = write_json(result.comparisons, out / "comparisons.json")
    files["metrics.csv"] = write_csv(result.metrics, out / "metrics.csv", columns=METRIC_KEYS)
    files["comparisons.csv"] = write_csv(result.comparisons, out / "comparisons.csv", columns=COMPARISON_KEYS)
    if result.multiclass:
        files["multiclass.json"] = write_json(result.multiclass, out / "multiclass.json")
        per_class = []
        for record in result.multiclass:
            overall = {k: v for k, v in record.items() if k not in ("per_class", "classes", "confusion")}
            per_class += [{**overall, **row, "confusion": record["confusion"]} for row in record["per_class"]]
        files["multiclass.csv"] = write_csv(per_class, out / "multiclass.csv")
    if with_cohort:
        files["subgroups.json"] = write_json(result.subgroups, out / "subgroups.json")
        files["subgroups.csv"] = write_csv(result.subgroups, out / "subgroups.csv", columns=SUBGROUP_KEYS)
        files["table1.csv"] = write_csv(result.table1, out / "table1.csv", columns=TABLE1_KEYS)


def _document(
    result: ReportResult,
    runs: Sequence[RunPredictions],
    thresholds: dict[str, dict[str, Threshold]],
    figures: Sequence[FigureBlock],
    *,
    config: ReportConfig,
    cohort_warnings: tuple[list[str], list[str]] | None,
) -> Document:
    flagged = set(result.random_weight_runs)
    rules, alpha = config.thresholds, config.alpha
    doc = Document("BALNMP report: " + ", ".join(result.runs), banners=list(result.warnings))
    doc.sections.append(document.runs_section(runs))
    if result.metrics:
        metrics = document.metrics_section(result.metrics, thresholds, rules=rules, alpha=alpha, flagged=flagged)
        doc.sections.append(metrics)
        doc.sections.append(document.comparisons_section(result.comparisons, flagged=flagged))
    if result.multiclass:
        doc.sections.append(document.multiclass_section(result.multiclass, alpha=alpha, flagged=flagged))
    if cohort_warnings is None:
        skipped = "No cohort was given (--clinical / key 'clinical'): skipped."
        doc.sections.append(Section("Subgroups and Table 1", [skipped]))
    else:
        subgroup_warnings, table1_warnings = cohort_warnings
        if result.subgroups:
            section = document.subgroups_section(
                result.subgroups, rules=rules, alpha=alpha, warnings=subgroup_warnings, flagged=flagged
            )
            doc.sections.append(section)
        doc.sections.append(document.table1_section(result.table1, warnings=table1_warnings))
    doc.sections.append(Section("Figures", list(figures)))
    if config.heatmaps is not None:
        from balnmp_cache.heatmap import heatmap_section

        doc.sections.append(heatmap_section(Path(config.heatmaps), report_dir=result.out))
    tables = ", ".join(name for name in result.files if name.endswith(".csv"))
    doc.sections.append(Section("Files", [f"Tables: {tables}. Records: metrics.json, comparisons.json."]))
    return doc


def _add_nuclei(
    result: ReportResult, doc: Document, runs: Sequence[RunPredictions], cohort: pd.DataFrame | None, *,
    nuclei_dir: Path, formats: Sequence[str],
) -> None:
    """The nucleus-morphometry section (``--nuclei``), placed before the list of files."""
    from balnmp_cache.nuclei.report_section import nuclei_section

    built = nuclei_section(nuclei_dir, cohort=cohort, runs=runs, out=result.out, formats=formats)
    doc.sections.insert(len(doc.sections) - 1, built.section)
    result.files.update(built.files)


def _check_out(target: Path) -> None:
    """Refuse an ``--out`` that holds anything a report does not write (an earlier report is replaced whole)."""
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(f"--out {target} is a file; the report needs a folder: choose another --out")
    foreign = sorted(p.name for p in target.iterdir() if not REPORT_FILE.match(p.name))
    if foreign:
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise ConfigError(
            f"--out {target} is not a report folder: it holds {', '.join(foreign[:5])}{more}, which report did not "
            "write; choose a new or empty --out (a report replaces an earlier report whole, and never deletes "
            "files it did not write)"
        )


def run_report(
    config: ReportConfig,
    *,
    progress: ProgressCallback | None = None,
    cohort: pd.DataFrame | None = None,
) -> ReportResult:
    """Compute the report of the runs in ``config.paths`` and write it into ``config.out``.

    The report is built in a staging folder beside ``config.out`` and swapped in whole
    (:mod:`balnmp_cache.outdir`): no file of an earlier report survives in the new one, a failure (a
    full disk) leaves the earlier report as it was, and a folder holding other files is refused.

    Args:
        config: the report configuration (``stages/report.toml`` plus CLI flags); ``paths`` are run
            directories or ``predictions.csv`` files.
        progress: optional progress callback (task ``"report"``, six steps).
        cohort: an already loaded cohort table (``load_cohort(...).table``); overrides ``config.clinical``.

    Returns:
        The records, the paths written and the warnings.

    Raises:
        ConfigError: no runs were given, or ``config.out`` holds files a report does not write.
        ReportInputError: a predictions file is invalid, or runs of one task hold different patients.
        CohortError: the cohort given with ``clinical`` is invalid.
        OutputBusyError, OutputWriteError: another report writes ``config.out``, or it cannot be written.
    """
    paths = [Path(p) for p in config.paths]
    if not paths:
        raise ConfigError(
            "no runs to report: pass run directories or predictions.csv files as PATH, "
            "or set 'paths' in stages/report.toml"
        )
    emit(progress, "start", "report", total=6)
    for path in paths:
        if not path.exists():
            recover(path)  # a run whose swap a killed train left half done
    runs = load_runs(paths)
    if cohort is None and config.clinical is not None:
        cohort = _load_cohort_table(Path(config.clinical))
    emit(progress, "advance", "report", steps=1, info={"runs": len(runs)})
    with staged_dir(Path(config.out), writer="report", check=_check_out) as staged:
        result = _write_report(config, runs, cohort, staged.staging, progress=progress)
        staged.commit()
    result.out = staged.target
    result.files = {name: staged.public(path) for name, path in result.files.items()}
    emit(progress, "end", "report")
    for warning in result.warnings:
        log.info("warning: %s", warning)  # also in result.warnings, which the CLI prints after the table
    log.info("report of %d run(s) written to %s", len(runs), result.out)
    return result


def _write_report(
    config: ReportConfig,
    runs: Sequence[RunPredictions],
    cohort: pd.DataFrame | None,
    out: Path,
    *,
    progress: ProgressCallback | None,
) -> ReportResult:
    """Compute every record and write every file of the report into ``out`` (the staging folder)."""
    result = ReportResult(out=out, runs=[r.name for r in runs], alpha=config.alpha)
    _flag_random_encoders(result, runs)
    thresholds = _evaluate(result, runs, config=config)
    emit(progress, "advance", "report", steps=1)

    cohort_warnings = None if cohort is None else _cohort_records(result, runs, cohort, thresholds, config=config)
    emit(progress, "advance", "report", steps=1)

    figures = _figures(result, runs, formats=config.figure_formats)
    emit(progress, "advance", "report", steps=1, info={"figures": len(figures)})

    _write_tables(result, with_cohort=cohort is not None)
    emit(progress, "advance", "report", steps=1)

    doc = _document(result, runs, thresholds, figures, config=config, cohort_warnings=cohort_warnings)
    if config.nuclei is not None:
        _add_nuclei(result, doc, runs, cohort, nuclei_dir=Path(config.nuclei), formats=config.figure_formats)
    result.files["report.md"] = atomic_write_text(out / "report.md", to_markdown(doc, out))
    result.files["report.html"] = atomic_write_text(out / "report.html", to_html(doc))
    result.files["config.toml"] = save_resolved(config, out)
    emit(progress, "advance", "report", steps=1)
    return result
