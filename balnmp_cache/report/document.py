"""The report's sections: tables built from the records, in the paper's layout (T, V, I-T)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from balnmp_cache.report.binary import Threshold
from balnmp_cache.report.intervals import LOGIT_METHOD
from balnmp_cache.report.predictions import SPLIT_LABELS, RunPredictions
from balnmp_cache.report.render import Section, TableBlock, fmt_estimate, fmt_p, fmt_value
from balnmp_cache.report.subgroups import SUBGROUP_TITLES

__all__ = [
    "comparisons_section",
    "metrics_section",
    "multiclass_section",
    "rule_caption",
    "runs_section",
    "subgroups_section",
    "table1_section",
]

Record = Mapping[str, Any]

_FALLBACK_MARK = "†"
_RANDOM_MARK = " ⚠ random encoder"
_METRIC_COLUMNS = [
    "n", "TP/FP/TN/FN", "AUC (exact binomial CI)", "AUC (DeLong CI)", "ACC", "SENS", "SPEC", "PPV", "NPV"
]  # fmt: skip
_PV_NOTE = (
    f"PPV/NPV intervals: standard logit (Mercaldo 2007); {_FALLBACK_MARK} marks the Clopper-Pearson fallback "
    "used where the logit is undefined (a predictive value of 0 or 1)."
)


def rule_caption(rule: str) -> str:
    """Which threshold a table uses, in words."""
    if rule == "0.5":
        return "threshold 0.5 (the official code: score >= 0.5 is positive)"
    return "Youden-optimal threshold chosen on V (val) and applied unchanged to T, V and I-T"


def _ci_label(alpha: float) -> str:
    return f"{100 * (1 - alpha):g}% CI"


def _run(name: str, flagged: Collection[str]) -> str:
    return name + _RANDOM_MARK if name in flagged else name


def _split(record: Record) -> str:
    split = str(record["split"])
    return SPLIT_LABELS.get(split, split)


def _where(record: Record) -> str:
    """``run, split`` or, for a subgroup, ``run, variable level``."""
    if "variable" in record:
        return f"{record['run']}, {SUBGROUP_TITLES[record['variable']]} {record['level']}"
    return f"{record['run']}, {_split(record)}"


def _notes(records: Sequence[Record], extra: Sequence[str] = ()) -> str | None:
    """Every distinct note, prefixed with where it applies."""
    seen: dict[str, None] = dict.fromkeys(extra)
    for record in records:
        for note in record.get("notes") or []:
            seen[f"{_where(record)}: {note}"] = None
    return "Notes: " + " | ".join(seen) if seen else None


def _pv(record: Record, name: str) -> str:
    text = fmt_estimate(record[name], record[f"{name}_ci"])
    fallback = record.get(f"{name}_ci_method") not in (None, LOGIT_METHOD)
    return f"{text} {_FALLBACK_MARK}" if fallback else text


def _metric_cells(record: Record) -> list[str]:
    return [
        str(record["n"]),
        f"{record['tp']}/{record['fp']}/{record['tn']}/{record['fn']}",
        fmt_estimate(record["auc"], record["auc_ci"]),
        fmt_estimate(record["auc"], record["auc_delong_ci"]),
        *(fmt_estimate(record[m], record[f"{m}_ci"]) for m in ("acc", "sens", "spec")),
        _pv(record, "ppv"),
        _pv(record, "npv"),
    ]


def runs_section(runs: Sequence[RunPredictions]) -> Section:
    """The runs: file, task, head, inputs (image only, image + clinical, clinical only), encoder, patients per split."""
    rows = []
    for run in runs:
        counts = ", ".join(f"{SPLIT_LABELS[s]} {len(run.split_frame(s))}" for s in run.splits)
        name = run.name + (_RANDOM_MARK if run.info.random_weights else "")
        rows.append([name, str(run.path), run.describe(), counts])
    return Section("Runs", [TableBlock("Runs in this report", ["Run", "File", "Description", "Patients"], rows)])


def metrics_section(
    records: Sequence[Record],
    thresholds: Mapping[str, Mapping[str, Threshold]],
    *,
    rules: Sequence[str],
    alpha: float,
    flagged: Collection[str] = (),
) -> Section:
    """One table of binary metrics per threshold rule; the note lists each run's threshold."""
    section = Section("Binary metrics")
    section.blocks.append(
        f"Estimates with {_ci_label(alpha)}: exact Clopper-Pearson for ACC, SENS and SPEC; standard logit for PPV "
        "and NPV; exact binomial for the AUC with n = patients (DeLong's interval beside it). Splits: T (train), "
        "V (val), I-T (test)."
    )
    for rule in rules:
        chosen = [r for r in records if r["threshold_rule"] == rule]
        if not chosen:
            continue
        cuts = []
        for run, by_rule in thresholds.items():
            if rule in by_rule:
                cut = by_rule[rule]
                cuts.append(f"{run}: threshold {cut.value:.4g}" + (f" ({cut.note})" if cut.note else ""))
        rows = [[_run(r["run"], flagged), _split(r), f"{r['threshold']:.4g}", *_metric_cells(r)] for r in chosen]
        note = " ".join(filter(None, [_PV_NOTE, "Thresholds: " + "; ".join(cuts) + ".", _notes(chosen)]))
        title = f"Binary metrics, {rule_caption(rule)}"
        section.blocks.append(TableBlock(title, ["Run", "Split", "Threshold", *_METRIC_COLUMNS], rows, note=note))
    return section


def comparisons_section(records: Sequence[Record], *, flagged: Collection[str] = ()) -> Section:
    """Paired DeLong tests between runs on the same patients."""
    title = "Comparisons (paired DeLong test)"
    if not records:
        return Section(title, ["No two runs of the same task were given: nothing to compare."])
    rows = [
        [
            _run(r["run_a"], flagged),
            _run(r["run_b"], flagged),
            _split(r),
            str(r["n"]),
            fmt_value(r["auc_a"]),
            fmt_value(r["auc_b"]),
            fmt_value(r["z"], 2),
            fmt_p(r["p_value"]),
        ]
        for r in records
    ]
    notes = [f"{r['run_a']} vs {r['run_b']}, {_split(r)}: {n}" for r in records for n in r["notes"]]
    columns = ["Run A", "Run B", "Split", "n", "AUC A", "AUC B", "z", "p"]
    note = "Notes: " + " | ".join(notes) if notes else None
    return Section(title, [TableBlock("Paired DeLong test of the AUCs (threshold-free)", columns, rows, note=note)])


def subgroups_section(
    records: Sequence[Record],
    *,
    rules: Sequence[str],
    alpha: float,
    warnings: Sequence[str],
    flagged: Collection[str] = (),
) -> Section:
    """Metrics per subgroup of the test split, one table per threshold rule."""
    section = Section("Subgroups of I-T (test)")
    section.blocks.append(
        f"{_ci_label(alpha)} as in the binary metrics; p tests the difference in AUC between the two subgroups of a "
        "variable (independent groups, z from DeLong standard errors)."
    )
    columns = ["Run", "Variable", "Level", *_METRIC_COLUMNS, "p (AUC difference)"]
    for rule in rules:
        chosen = [r for r in records if r["threshold_rule"] == rule]
        if not chosen:
            continue
        rows = [
            [
                _run(r["run"], flagged),
                SUBGROUP_TITLES[r["variable"]],
                r["level"],
                *_metric_cells(r),
                fmt_p(r["p_value"]),
            ]
            for r in chosen
        ]
        note = _notes(chosen, [*warnings, _PV_NOTE])
        section.blocks.append(TableBlock(f"Subgroups, {rule_caption(rule)}", columns, rows, note=note))
    return section


def multiclass_section(records: Sequence[Record], *, alpha: float, flagged: Collection[str] = ()) -> Section:
    """Macro AUC and accuracy, then per-class AUC, precision and recall of the multi-class runs."""
    overall = [
        [
            _run(r["run"], flagged),
            _split(r),
            str(r["n"]),
            fmt_value(r["macro_auc"]),
            fmt_estimate(r["acc"], r["acc_ci"]),
        ]
        for r in records
    ]
    per_class = [
        [
            _run(r["run"], flagged),
            _split(r),
            c["class"],
            str(c["support"]),
            fmt_value(c["auc_ovr"]),
            fmt_estimate(c["precision"], c["precision_ci"]),
            fmt_estimate(c["recall"], c["recall_ci"]),
        ]
        for r in records
        for c in r["per_class"]
    ]
    return Section(
        "Multi-class tasks",
        [
            f"Predicted class = argmax of the probabilities (no threshold); {_ci_label(alpha)} by Clopper-Pearson.",
            TableBlock(
                "Macro one-vs-rest AUC and accuracy",
                ["Run", "Split", "n", "Macro AUC (OvR)", "ACC"],
                overall,
                note=_notes(records),
            ),
            TableBlock(
                "Per class (one-vs-rest)", ["Run", "Split", "Class", "Support", "AUC", "Precision", "Recall"], per_class
            ),
        ],
    )


def table1_section(rows: Sequence[Record], *, warnings: Sequence[str]) -> Section:
    """Table 1: the training (T + V) and test (I-T) cohorts."""
    # The characteristic is named on the first row of its group only, as in a printed Table 1.
    names = [
        "" if i and rows[i - 1]["characteristic"] == r["characteristic"] else r["characteristic"]
        for i, r in enumerate(rows)
    ]
    cells = [
        [
            name,
            r["level"],
            r["all"],
            r["training"],
            r["test"],
            fmt_p(r["p_value"]) if r["test_name"] else "",
            r["test_name"] or "",
        ]
        for name, r in zip(names, rows, strict=True)
    ]
    remarks = [*warnings, *(f"{r['characteristic']}: {r['note']}" for r in rows if r.get("note"))]
    note = (
        "Mean ± SD (ddof 1) with the Mann-Whitney U test; counts (% of the patients with a known value) with "
        "Pearson's chi-square test (no continuity correction)."
    )
    if remarks:
        note += " " + " | ".join(remarks)
    columns = ["Characteristic", "Level", "All", "Training cohort (T + V)", "Test cohort (I-T)", "p", "Test"]
    return Section("Table 1: cohort characteristics", [TableBlock("Table 1", columns, cells, note=note)])
