"""Where the report's numbers come from: the per-patient table, provenance and the statistics conventions."""

from __future__ import annotations

import datetime
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from balnmp_cache import __version__
from balnmp_cache import runs as run_dirs
from balnmp_cache.report.predictions import SPLIT_LABELS, RunPredictions
from balnmp_cache.report.render import Section, TableBlock
from balnmp_cache.report.replicates import read_train_config
from balnmp_cache.sorting import natural_key

__all__ = ["CONVENTIONS", "patient_records", "patients_section", "provenance_record", "provenance_section"]

CONVENTIONS = (
    "Positive: score (probability of class 1) >= threshold, as in the official code; 0.5 or the Youden-optimal "
    "cut-off on V (val) applied unchanged to every split.",
    "AUC: Mann-Whitney (ties 1/2) with the exact binomial interval on n patients (the paper's convention) and "
    "DeLong's interval beside it; paired DeLong tests between runs, Holm and Benjamini-Hochberg adjusted per split.",
    "ACC, SENS, SPEC and multi-class precision and recall: exact Clopper-Pearson intervals; PPV, NPV: standard logit "
    "(Mercaldo 2007), Clopper-Pearson where the logit is undefined.",
    "Bands and bootstrap intervals (ROC, PR, Brier, AP, macro and micro AUC): stratified bootstrap over patients "
    "(each class resampled within itself), percentile intervals, numpy default_rng(bootstrap_seed).",
    "Calibration: equal-width bins; Brier score; slope of the logistic recalibration and calibration-in-the-large.",
    "Seeds: mean ± SD (ddof 1) (min-max); cross-validation: fold mean ± s.e. and pooled out-of-fold predictions.",
    "Table 1: mean ± SD with the Mann-Whitney U test, counts (%) with Pearson's chi-square without continuity "
    "correction.",
)


def patient_records(runs: Sequence[RunPredictions]) -> list[dict[str, Any]]:
    """One record per patient and split: ``patient_id``, ``split``, ``label`` and each run's score.

    A binary run gives ``p_1``; a multi-class run its predicted class and that class's probability.
    """
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for run in runs:
        for row in run.table.itertuples(index=False):
            key = (str(row.patient_id), str(row.split))
            record = table.setdefault(key, {"patient_id": key[0], "split": key[1], "label": run.classes[row.label]})
            probabilities = [getattr(row, f"p_{c}") for c in range(run.n_classes)]
            if run.is_binary:
                record[run.name] = probabilities[1]
            else:
                best = max(range(run.n_classes), key=lambda c: probabilities[c])
                record[run.name] = f"{run.classes[best]} ({probabilities[best]:.3f})"
    order = {s: i for i, s in enumerate(SPLIT_LABELS)}
    return sorted(table.values(), key=lambda r: (order.get(r["split"], 9), natural_key(r["patient_id"])))


def patients_section(records: Sequence[dict[str, Any]], runs: Sequence[RunPredictions], *, max_runs: int) -> Section:
    """The per-patient predictions, sortable by any column (the test split; every split is in patients.csv)."""
    shown = [r.name for r in runs][:max_runs]
    test = [r for r in records if r["split"] == "test"] or list(records)

    def cell(value: Any) -> str:
        return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    rows = [[r["patient_id"], SPLIT_LABELS.get(r["split"], r["split"]), str(r["label"]),
             *(cell(r.get(name)) for name in shown)] for r in test]
    left = len(runs) - len(shown)
    note = ("Binary runs: probability of class 1; multi-class runs: predicted class (its probability). "
            "Click a column heading to sort." + (f" {left} more run(s) in patients.csv." if left else ""))
    table = TableBlock("Predictions per patient", ["Patient", "Split", "True class", *shown], rows, note=note,
                       sortable=True)
    return Section("Per-patient predictions", [table])


def provenance_record(runs: Sequence[RunPredictions], *, command: str | None) -> dict[str, Any]:
    """``provenance.json``: the package version, the date, the command and every run's origin and training config."""
    per_run = []
    for run in runs:
        folder = run.path.parent
        record = None
        if run_dirs.run_files(folder).run_json.is_file():
            try:
                record = run_dirs.read_run(folder)
            except Exception:  # already reported when the predictions were read
                record = None
        cache = record.cache if record is not None else {}
        per_run.append({
            "run": run.name, "predictions": str(run.path),
            "cache_key": cache.get("cache_key"), "encoder": cache.get("encoder_identifier") or cache.get("encoder"),
            "weights": cache.get("weights"),
            "trained_with": None if record is None else record.package_version,
            "device": None if record is None else record.device,
            "best_epoch": None if record is None else record.best_epoch,
            "config": read_train_config(run),
        })
    return {
        "package": "balnmp-cache", "version": __version__,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command if command is not None else shlex.join(sys.argv),
        "runs": per_run, "conventions": list(CONVENTIONS),
    }


def _config_text(config: dict[str, Any] | None) -> str:
    if config is None:
        return "no config.toml"
    return ", ".join(f"{k}={v}" for k, v in config.items() if k not in ("out", "force"))


def provenance_section(record: dict[str, Any]) -> Section:
    """The provenance table and the statistics conventions, last in the report."""
    head = (f"balnmp-cache {record['version']}, report made {record['date']} with: {record['command']}")
    rows = [[r["run"], r["cache_key"] or "–", r["encoder"] or "–", str(r["weights"] or "–"),
             r["trained_with"] or "–", r["device"] or "–", _config_text(r["config"])] for r in record["runs"]]
    columns = ["Run", "Cache key", "Encoder", "Weights", "Trained with", "Device", "Training configuration"]
    return Section("Provenance", [
        head,
        TableBlock("Runs and their training configuration", columns, rows,
                   note="The full records are in provenance.json; each run's config.toml is in its folder."),
        "Statistics conventions: " + " ".join(CONVENTIONS),
    ])
