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
from balnmp_cache.report import gallery
from balnmp_cache.report.assemble import Parts, build_document
from balnmp_cache.report.binary import METRIC_KEYS, Threshold, evaluate_binary
from balnmp_cache.report.calibration import CALIBRATION_KEYS
from balnmp_cache.report.compare import COMPARISON_KEYS, compare_runs
from balnmp_cache.report.config import ReportConfig
from balnmp_cache.report.figures import confusion_figures
from balnmp_cache.report.multiclass import evaluate_multiclass
from balnmp_cache.report.predictions import RunPredictions, load_runs
from balnmp_cache.report.provenance import patient_records, provenance_record
from balnmp_cache.report.render import Document, to_html, to_markdown, write_csv, write_json
from balnmp_cache.report.replicates import crossval_records, find_replicates, seed_records, split_designs
from balnmp_cache.report.subgroups import SUBGROUP_KEYS, subgroup_records
from balnmp_cache.report.table1 import ALN_GROUPS, TABLE1_KEYS, cohort_groups, table1, table1_by_aln
from balnmp_cache.report.training import EARLY_EPOCHS, TrainingCurves, read_training
from balnmp_cache.report.uncertainty import CURVE_KEYS, SplitCurves, evaluate_curves

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["REPORT_FILE", "REPORT_METRIC_KEYS", "ReportResult", "run_report"]

log = logging.getLogger(__name__)

REPORT_FILE = re.compile(
    r"^(?:(?:metrics|comparisons|multiclass|subgroups|seeds|crossval)\.(?:json|csv)"
    r"|(?:table1|table1_by_aln|patients|calibration_bins)\.csv|(?:training|provenance)\.json"
    r"|(?:roc|pr|calibration|training|confusion)_.+\.(?:png|svg)|nuclei_.+\.(?:json|csv|png|svg)"
    r"|report\.(?:md|html|log)|config\.toml)$"
)
"""The names of the files a report writes (``report.log``: where older versions kept the log)."""

REPORT_METRIC_KEYS = (*METRIC_KEYS[:-1], *CURVE_KEYS, *CALIBRATION_KEYS, "notes")
"""Keys of a ``metrics.json`` record: :data:`METRIC_KEYS` with average precision and calibration before ``notes``."""


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
        table1_by_aln: Table 1 stratified by ALN status, N0 vs N(+) (empty without a cohort).
        seeds: ``seeds.json`` records, per group of runs differing only by seed and metric.
        crossval: ``crossval.json`` records, per cross-validation and repeat.
        training: ``training.json`` records, per run with a ``curves.csv``.
        patients: per-patient predictions of every run (``patients.csv``).
        provenance: ``provenance.json``.
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
    table1_by_aln: list[dict[str, Any]] = field(default_factory=list)
    seeds: list[dict[str, Any]] = field(default_factory=list)
    crossval: list[dict[str, Any]] = field(default_factory=list)
    training: list[dict[str, Any]] = field(default_factory=list)
    patients: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
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


def _merge_curves(metrics: list[dict[str, Any]], curves: dict[tuple[str, str], SplitCurves]) -> list[dict[str, Any]]:
    """The binary records with their split's AP and calibration keys (:data:`REPORT_METRIC_KEYS` order)."""
    merged = []
    for record in metrics:
        extra = curves[(record["run"], record["split"])]
        full = {**record, **extra.record, "notes": [*record["notes"], *extra.notes]}
        merged.append({key: full[key] for key in REPORT_METRIC_KEYS})
    return merged


def _evaluate(
    result: ReportResult, runs: Sequence[RunPredictions], *, config: ReportConfig, command: str | None
) -> Parts:
    """Fill every record of ``result`` that needs no cohort; return the parts the document is built from."""
    metrics, thresholds = evaluate_binary(runs, rules=config.thresholds, alpha=config.alpha)
    for name, by_rule in thresholds.items():
        if "youden" in by_rule and by_rule["youden"].fell_back:
            result.warnings.append(f"run {name}: Youden {by_rule['youden'].note}")
    boot = {"n_boot": config.bootstrap, "seed": config.bootstrap_seed}
    curves = evaluate_curves(runs, alpha=config.alpha, n_bins=config.calibration_bins, **boot)
    result.metrics = _merge_curves(metrics, curves)
    result.multiclass = evaluate_multiclass(runs, alpha=config.alpha, **boot)
    result.comparisons = compare_runs(runs, designs=split_designs(runs))
    groups = find_replicates(runs)
    result.seeds = seed_records(groups, result.metrics, rule=config.thresholds[0])
    result.crossval = crossval_records(groups, result.metrics, alpha=config.alpha)
    parts = Parts(thresholds, curves=curves, training=read_training(runs))
    result.training = [t.record() for t in parts.training]
    result.warnings += _training_warnings(parts.training)
    result.patients = patient_records(runs)
    result.provenance = provenance_record(runs, command=command)
    return parts


def _training_warnings(training: Sequence[TrainingCurves], *, most: int = 3) -> list[str]:
    """One warning per flagged run, or one for all of them when more than ``most`` are flagged."""
    flagged = [t for t in training if t.notes]
    if len(flagged) <= most:
        return [f"run {t.run}: {note}" for t in flagged for note in t.notes]
    return [f"{len(flagged)} of {len(training)} runs flagged their model selection (an epoch within the first "
            f"{EARLY_EPOCHS}, or a small validation split): see Training behaviour"]


def _figures(result: ReportResult, runs: Sequence[RunPredictions], parts: Parts, *, config: ReportConfig) -> int:
    """Write every figure into ``result.out``, record their files in ``result`` and ``parts``; return how many."""
    out, formats = result.out, config.figure_formats
    figures = gallery.band_figures(runs, result.metrics, parts.curves, out=out, formats=formats, alpha=config.alpha,
                                   n_boot=config.bootstrap)
    figures["calibration"] = gallery.calibration_figures(runs, parts.curves, out=out, formats=formats)
    figures["training"] = gallery.training_figures(runs, parts.training, out=out, formats=formats)
    figures["ovr"] = gallery.ovr_figures(runs, out=out, formats=formats, n_boot=config.bootstrap,
                                         seed=config.bootstrap_seed, alpha=config.alpha)
    figures["confusion"] = confusion_figures(runs, result.metrics, result.multiclass, out=out, formats=formats)
    parts.figures = figures
    blocks = [block for group in figures.values() for block in group]
    result.files.update({path.name: path for block in blocks for path in block.files})
    return len(blocks)


def _cohort_records(
    result: ReportResult,
    runs: Sequence[RunPredictions],
    cohort: pd.DataFrame,
    thresholds: dict[str, dict[str, Threshold]],
    *,
    config: ReportConfig,
) -> tuple[list[str], list[str], list[str]]:
    """Fill the subgroups and both Tables 1 of ``result``; return their warnings (also added to ``result``)."""
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
    result.table1_by_aln, aln_warnings = table1_by_aln(
        cohort, t_stage_cutoff_cm=config.t_stage_cutoff_cm, extra_columns=config.table1_columns
    )
    result.warnings += subgroup_warnings + table1_warnings + aln_warnings
    return subgroup_warnings, table1_warnings, aln_warnings


def _calibration_rows(metrics: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, rows = set(), []
    for record in metrics:
        if (record["run"], record["split"]) in seen:
            continue  # the bins do not depend on the threshold rule
        seen.add((record["run"], record["split"]))
        rows += [{"run": record["run"], "split": record["split"], "bin": k, **b}
                 for k, b in enumerate(record["calibration_bins"])]
    return rows


def _write_tables(result: ReportResult, *, with_cohort: bool) -> None:
    out, files = result.out, result.files
    files["metrics.json"] = write_json(result.metrics, out / "metrics.json")
    files["comparisons.json"] = write_json(result.comparisons, out / "comparisons.json")
    columns = [k for k in REPORT_METRIC_KEYS if k != "calibration_bins"]
    flat = [{k: r[k] for k in columns} for r in result.metrics]
    files["metrics.csv"] = write_csv(flat, out / "metrics.csv", columns=columns)
    files["calibration_bins.csv"] = write_csv(_calibration_rows(result.metrics), out / "calibration_bins.csv")
    files["comparisons.csv"] = write_csv(result.comparisons, out / "comparisons.csv", columns=COMPARISON_KEYS)
    if result.multiclass:
        files["multiclass.json"] = write_json(result.multiclass, out / "multiclass.json")
        per_class = []
        for record in result.multiclass:
            overall = {k: v for k, v in record.items() if k not in ("per_class", "classes", "confusion")}
            per_class += [{**overall, **row, "confusion": record["confusion"]} for row in record["per_class"]]
        files["multiclass.csv"] = write_csv(per_class, out / "multiclass.csv")
    for name in ("seeds", "crossval"):
        records = getattr(result, name)
        if records:
            files[f"{name}.json"] = write_json(records, out / f"{name}.json")
            files[f"{name}.csv"] = write_csv(records, out / f"{name}.csv")
    files["training.json"] = write_json(result.training, out / "training.json")
    files["patients.csv"] = write_csv(result.patients, out / "patients.csv")
    files["provenance.json"] = write_json(result.provenance, out / "provenance.json")
    if with_cohort:
        files["subgroups.json"] = write_json(result.subgroups, out / "subgroups.json")
        files["subgroups.csv"] = write_csv(result.subgroups, out / "subgroups.csv", columns=SUBGROUP_KEYS)
        files["table1.csv"] = write_csv(result.table1, out / "table1.csv", columns=TABLE1_KEYS)
        aln_columns = ("characteristic", "level", "all", *ALN_GROUPS, "p_value", "test_name", "note")
        files["table1_by_aln.csv"] = write_csv(result.table1_by_aln, out / "table1_by_aln.csv", columns=aln_columns)


def _add_nuclei(
    result: ReportResult, doc: Document, runs: Sequence[RunPredictions], cohort: pd.DataFrame | None, *,
    nuclei_dir: Path, formats: Sequence[str],
) -> None:
    """The nucleus-morphometry section (``--nuclei``), placed before the list of files."""
    from balnmp_cache.nuclei.report_section import nuclei_section

    built = nuclei_section(nuclei_dir, cohort=cohort, runs=runs, out=result.out, formats=formats)
    where = next((i for i, s in enumerate(doc.sections) if s.title == "Files"), len(doc.sections))
    doc.sections.insert(where, built.section)
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
    command: str | None = None,
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
        command: the command line recorded in the provenance (default: this process's arguments).

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
        result = _write_report(config, runs, cohort, staged.staging, progress=progress, command=command)
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
    command: str | None,
) -> ReportResult:
    """Compute every record and write every file of the report into ``out`` (the staging folder)."""
    result = ReportResult(out=out, runs=[r.name for r in runs], alpha=config.alpha)
    _flag_random_encoders(result, runs)
    parts = _evaluate(result, runs, config=config, command=command)
    emit(progress, "advance", "report", steps=1)

    if cohort is not None:
        parts.cohort_warnings = _cohort_records(result, runs, cohort, parts.thresholds, config=config)
    emit(progress, "advance", "report", steps=1)

    n_figures = _figures(result, runs, parts, config=config)
    emit(progress, "advance", "report", steps=1, info={"figures": n_figures})

    _write_tables(result, with_cohort=cohort is not None)
    emit(progress, "advance", "report", steps=1)

    doc = build_document(result, runs, parts, config=config)
    if config.nuclei is not None:
        _add_nuclei(result, doc, runs, cohort, nuclei_dir=Path(config.nuclei), formats=config.figure_formats)
    result.files["report.md"] = atomic_write_text(out / "report.md", to_markdown(doc, out))
    result.files["report.html"] = atomic_write_text(out / "report.html", to_html(doc))
    result.files["config.toml"] = save_resolved(config, out)
    emit(progress, "advance", "report", steps=1)
    return result
