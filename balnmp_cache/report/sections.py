"""The report's reader-facing sections: the summary first, then calibration, training, seeds and cross-validation."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from balnmp_cache.report.document import rule_caption
from balnmp_cache.report.predictions import SPLIT_LABELS, RunPredictions
from balnmp_cache.report.render import FigureBlock, Section, TableBlock, fmt_estimate, fmt_value
from balnmp_cache.report.training import EARLY_EPOCHS, SMALL_VAL_CLASS, SMALL_VAL_PATIENTS, TrainingCurves

__all__ = ["calibration_section", "crossval_section", "seeds_section", "summary_section", "training_section"]

Record = Mapping[str, Any]


def _name(name: str, flagged: Collection[str]) -> str:
    return name + " ⚠ random encoder" if name in flagged else name


def _split_of(run: RunPredictions) -> str:
    return "test" if "test" in run.splits else run.splits[-1]


def _sizes(run: RunPredictions) -> str:
    counts = run.table["split"].value_counts()
    return " / ".join(str(int(counts.get(s, 0))) for s in ("train", "val", "test"))


def summary_section(
    runs: Sequence[RunPredictions],
    metrics: Sequence[Record],
    multiclass: Sequence[Record],
    *,
    rule: str,
    alpha: float,
    flagged: Collection[str] = (),
) -> Section:
    """One row per run: the headline figures on its test split (I-T), at the threshold ``rule``."""
    level = f"{100 * (1 - alpha):g}% CI"
    rows = []
    for run in runs:
        split = _split_of(run)
        if run.is_binary:
            r = next((m for m in metrics if m["run"] == run.name and m["split"] == split
                      and m["threshold_rule"] == rule), None)
            if r is None:
                continue
            cells = [fmt_estimate(r["auc"], r["auc_ci"]), fmt_value(r["threshold"]),
                     fmt_estimate(r["acc"], r["acc_ci"]),
                     fmt_estimate(r["sens"], r["sens_ci"]), fmt_estimate(r["spec"], r["spec_ci"]),
                     fmt_estimate(r.get("brier"), r.get("brier_ci"))]
        else:
            r = next((m for m in multiclass if m["run"] == run.name and m["split"] == split), None)
            if r is None:
                continue
            cells = [fmt_estimate(r["macro_auc"], r.get("macro_auc_ci")) + " (macro)", "argmax",
                     fmt_estimate(r["acc"], r["acc_ci"]), "–", "–", "–"]
        rows.append([_name(run.name, flagged), run.describe(), SPLIT_LABELS[split], str(r["n"]), _sizes(run), *cells])
    columns = ["Run", "Model", "Split", "n", "n T / V / I-T", f"AUC ({level})", "Threshold", "ACC", "SENS", "SPEC",
               "Brier"]
    note = (f"Threshold: {rule_caption(rule)}. AUC interval: exact binomial (the paper's convention); ACC, SENS, "
            "SPEC: Clopper-Pearson; Brier: stratified bootstrap percentile interval. Click a heading to sort. "
            "Details in the sections below.")
    table = TableBlock("Headline results per run (test split)", columns, rows, note=note, sortable=True)
    return Section("Summary", [table])


def calibration_section(
    metrics: Sequence[Record], figures: Sequence[FigureBlock], *, rule: str, alpha: float, n_boot: int
) -> Section:
    """Brier score, calibration slope and intercept and average precision per run and split, then the figures."""
    rows = [
        [r["run"], SPLIT_LABELS[r["split"]], str(r["n"]), fmt_estimate(r["brier"], r["brier_ci"]),
         fmt_value(r["calibration_slope"], 2), fmt_value(r["calibration_intercept"], 2),
         fmt_estimate(r["ap"], r["ap_ci"])]
        for r in metrics if r["threshold_rule"] == rule
    ]
    note = (f"Brier = mean (p - y)²; AP = average precision. Intervals: {100 * (1 - alpha):g}% percentile, stratified "
            f"bootstrap over patients ({n_boot} resamples). Slope: logistic recalibration logit P(y) = a + b·logit(p) "
            "(ideal 1; below 1: over-confident, spread too wide; above 1: under-confident, squeezed together); "
            "intercept: calibration-in-the-large, a with b = 1 (ideal 0; above 0: probabilities too low).")
    columns = ["Run", "Split", "n", "Brier", "Calibration slope", "Calibration intercept", "AP"]
    intro = ("Reliability diagrams: each bin's mean predicted probability against its fraction of positives, the "
             "bin's patient count above the point, the dotted diagonal is perfect calibration; below: the scores of "
             "each true class.")
    return Section("Calibration", [TableBlock("Calibration and precision-recall", columns, rows, note=note),
                                   intro, *figures])


def training_section(items: Sequence[TrainingCurves], figures: Sequence[FigureBlock]) -> Section:
    """Epochs trained, the selected epoch and the validation split it was chosen on, with flags."""
    section = Section("Training behaviour")
    if not items:
        section.blocks.append("No run folder holds a curves.csv (runs given as bare predictions.csv files).")
        return section
    rows = [[t.run, str(t.epochs_run), "–" if t.best_epoch is None else str(t.best_epoch), str(t.n_val),
             str(t.n_val_minority), " ".join(t.notes) or "–"] for t in items]
    note = (f"Flagged: a selection within the first {EARLY_EPOCHS} epochs of a longer run, or on a validation split "
            f"of fewer than {SMALL_VAL_PATIENTS} patients or fewer than {SMALL_VAL_CLASS} of a class.")
    columns = ["Run", "Epochs run", "Selected epoch", "Val patients", "Val smaller class", "Flag"]
    section.blocks += [TableBlock("Model selection (best validation AUC)", columns, rows, note=note), *figures]
    return section


def _spread(s: Mapping[str, Any]) -> str:
    if s["mean"] is None:
        return "–"
    sd = "–" if s["sd"] is None else f"{s['sd']:.3f}"
    return f"{s['mean']:.3f} ± {sd} ({s['min']:.3f}–{s['max']:.3f})"


def seeds_section(records: Sequence[Record], *, rule: str) -> Section | None:
    """Per seed group: mean ± SD (min–max) of each metric over the seeds; ``None`` without seed groups."""
    if not records:
        return None
    groups: dict[str, dict[str, Record]] = {}
    for r in records:
        groups.setdefault(r["group"], {})[r["metric"]] = r
    metrics = ("auc", "acc", "sens", "spec", "brier")
    rows = [[group, str(by["auc"]["n"]), ", ".join(str(s) for s in by["auc"]["seeds"]),
             *(_spread(by[m]) for m in metrics)] for group, by in groups.items()]
    columns = ["Configuration", "Runs", "Seeds", "AUC", "ACC", "SENS", "SPEC", "Brier"]
    note = (f"Test split (I-T); mean ± SD (ddof 1) (min–max) over the runs that differ only by seed; ACC, SENS, SPEC "
            f"at {rule_caption(rule)}. Every seed's own values are in metrics.csv; seeds.csv holds these summaries.")
    return Section("Seeds", [TableBlock("Runs grouped over seeds", columns, rows, note=note)])


def crossval_section(records: Sequence[Record], *, alpha: float) -> Section | None:
    """Per cross-validation repeat: fold AUCs mean ± s.e. and the pooled out-of-fold metrics."""
    if not records:
        return None
    rows = []
    for r in records:
        fold, pooled = r["fold_auc"], r["pooled"]
        mean_se = "–" if fold["mean"] is None else f"{fold['mean']:.3f} ± {fold['se'] or 0:.3f}"
        rows.append([r["group"], f"split_seed {r['split_seed']}, seed {r['seed']}",
                     f"{len(r['folds'])} of {r['k']}", mean_se, str(pooled["n"]),
                     fmt_estimate(pooled["auc"], pooled["auc_ci"]),
                     fmt_estimate(pooled["auc"], pooled["auc_delong_ci"]),
                     fmt_estimate(pooled["acc"], pooled["acc_ci"]), fmt_estimate(pooled["sens"], pooled["sens_ci"]),
                     fmt_estimate(pooled["spec"], pooled["spec_ci"]), " ".join(r["notes"]) or "–"])
    columns = ["Cross-validation", "Repeat", "Folds", "Fold AUC mean ± s.e.", "Pooled n", "Pooled AUC (binomial CI)",
               "Pooled AUC (DeLong CI)", "ACC", "SENS", "SPEC", "Notes"]
    note = ("One row per repeat (a k-fold split drawn with split_seed, trained with seed). Fold AUC: the test folds' "
            "AUCs, mean ± standard error (SD/√k; folds share training patients, so it understates the spread). Pooled: "
            "the k test folds' out-of-fold predictions together, each patient once, with the binary metrics at "
            f"threshold 0.5 and their {100 * (1 - alpha):g}% intervals.")
    blocks: list[Any] = [TableBlock("k-fold cross-validation", columns, rows, note=note)]
    by_group: dict[str, list[Record]] = {}
    for r in records:
        by_group.setdefault(r["group"], []).append(r)
    for group, repeats in by_group.items():
        if len(repeats) > 1:
            aucs = [r["pooled"]["auc"] for r in repeats if r["pooled"]["auc"] is not None]
            if aucs:
                mean = sum(aucs) / len(aucs)
                sd = (sum((a - mean) ** 2 for a in aucs) / (len(aucs) - 1)) ** 0.5 if len(aucs) > 1 else 0.0
                blocks.append(f"{group}: repeated k-fold, {len(repeats)} repeats: pooled AUC {mean:.3f} ± {sd:.3f} "
                              f"(mean ± SD over repeats, {min(aucs):.3f}–{max(aucs):.3f}).")
    return Section("Cross-validation", blocks)
