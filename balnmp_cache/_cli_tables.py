"""Rich tables for the CLI's end-of-command summaries (rendering only; results come from the library)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from balnmp_cache.sorting import natural_key

_STATUS_STYLE = {
    "ok": "green", "failed": "red", "empty": "yellow", "skipped": "dim", "warn": "yellow", "missing": "red"
}  # fmt: skip


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def demo_summary(summary: Any) -> Text:
    """One line: patients per class and split, slides written, where and how long."""
    counts = ", ".join(f"{k} {v}" for k, v in summary.class_counts.items())
    splits = ", ".join(f"{k} {v}" for k, v in summary.split_counts.items())
    return Text(
        f"demo cohort: {summary.n_patients} patients ({counts}; {splits}), "
        f"{summary.n_slides_jpeg} JPEG + {summary.n_slides_tiff} pyramidal slides in {summary.root} "
        f"({summary.seconds:.1f} s)"
    )


def extract_summary(result: Any) -> Group:
    """Per-slide rows that did not simply succeed, then the totals."""
    table = Table(title=f"extract → {result.cache_dir}", title_justify="left")
    for col in ("slide", "patient", "status", "patches", "seconds", "reason"):
        table.add_column(col, overflow="fold")
    rows = sorted(result.rows, key=lambda r: (r.status == "ok", natural_key(r.slide_id)))
    problems = [r for r in rows if r.status != "ok"]
    shown = problems + [r for r in rows if r.status == "ok"][: max(0, 10 - len(problems))]
    for row in shown[:50]:
        table.add_row(
            Text(row.slide_id), Text(row.patient_id), Text(row.status, style=_STATUS_STYLE.get(row.status, "")),
            str(row.n_patches), f"{row.seconds:.1f}", Text(row.reason),
        )
    if len(rows) > len(shown):
        table.caption = f"{len(rows) - len(shown)} more ok slides not shown; see manifest.csv"
    rate = result.n_patches / result.seconds if result.seconds else 0.0
    busy = f", {result.n_busy} left to another extract process" if result.n_busy else ""
    totals = Text(
        f"slides: {result.n_ok} ok, {result.n_skipped} already complete, {result.n_empty} empty, "
        f"{result.n_failed} failed{busy}; {result.n_patches} patches in {result.seconds:.1f} s = {rate:.1f} patches/s "
        f"end to end (reading {result.read_seconds:.1f} s on the reader thread, overlapped with encoding "
        f"{result.compute_seconds:.1f} s)",
        style="bold red" if result.exit_code else "bold",
    )
    times = getattr(result, "times", None)
    if times is None or not times.loop:
        return Group(table, totals)
    return Group(table, totals, Text(f"time: {times.summary()}"))


def train_summary(result: Any) -> Group:
    table = Table(title=f"train → {result.run_dir}", title_justify="left")
    for col in ("split", "patients", "AUC", "ACC@0.5"):
        table.add_column(col)
    for split, m in result.metrics.items():
        table.add_row(split, str(m.get("n")), _fmt(m.get("auc")), _fmt(m.get("acc")))
    note = Text(
        f"task {result.task_name}, head {result.head}, clinical {result.clinical}; best epoch {result.best_epoch} "
        f"of {result.epochs_run} (selected on validation AUC), {result.seconds:.1f} s"
    )
    return Group(table, note)


def ablation_summary(result: Any) -> Table:
    table = Table(title=f"ablation → {result.out}", title_justify="left")
    columns: Sequence[str] = result.summary_columns
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in result.summary_rows:
        table.add_row(*(_fmt(row.get(col)) for col in columns))
    table.caption = f"{result.n_runs} runs ({result.n_done_before} resumed), results in {result.csv_path}"
    return table


def predict_summary(result: Any) -> Group:
    table = Table(title="predictions", title_justify="left")
    table.add_column("patient")
    for name in result.classes:
        table.add_column(f"p({name})")
    table.add_column("top attention patches", overflow="fold")
    for row in result.rows:
        patches = "; ".join(f"{key} ({att:.2f})" for key, att in row.top_patches)
        table.add_row(Text(row.patient_id), *(_fmt(p) for p in row.probabilities), Text(patches))
    return Group(table, Text(f"written to {result.out}"))


def heatmap_summary(result: Any) -> Group | Text:
    """The slides that failed (the first 20), then the totals."""
    if result.message:
        return Text(f"heatmap: {result.message}; written to {result.out}", style="yellow")
    table = Table(title=f"heatmap → {result.out}", title_justify="left")
    for col in ("slide", "patient", "status", "patches", "seconds", "reason"):
        table.add_column(col, overflow="fold")
    shown = [r for r in result.rows if r.status == "failed"][:20]
    for row in shown:
        status = Text(row.status, style=_STATUS_STYLE.get(row.status, ""))
        table.add_row(Text(row.slide_id), Text(row.patient_id), status, str(row.n_patches), f"{row.seconds:.1f}",
                      Text(row.reason))
    flat = sum(bool(r.flat) for r in result.rows)
    totals = Text(
        f"slides: {result.count('ok')} drawn, {result.count('skipped')} already drawn, "
        f"{result.count('failed')} failed; "
        f"ranking score: {result.score_name}; attention near-uniform on {flat} of {len(result.rows)} slides; "
        f"written to {result.out}"
    )
    return Group(table, totals) if shown else totals


_SPLIT_SHORT = {"train": "T", "val": "V", "test": "I-T"}


def report_table(result: Any) -> Table:
    """Headline metrics per run × split × rule: AUC with its interval, ACC, SENS, SPEC.

    Test rows are bold; runs with a random encoder are marked in red. Full intervals are in ``report.md``.
    """
    from balnmp_cache.report.render import fmt_estimate, fmt_value

    level = f"{100 * (1 - result.alpha):g}% CI"
    table = Table(
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
        title=f"balnmp-cache report: {result.out}",
        caption=f"T = train, V = val, I-T = test; intervals of every metric in {result.out / 'report.md'}",
    )
    table.add_column("Run", overflow="fold", min_width=8)
    for column in ("Split", "Threshold"):
        table.add_column(column, no_wrap=True)
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column(f"AUC ({level})", justify="right", no_wrap=True, min_width=20)
    for column in ("ACC", "SENS", "SPEC"):
        table.add_column(column, justify="right", no_wrap=True)

    def run_cell(name: str) -> Text:
        if name in result.random_weight_runs:
            return Text(f"{name} ⚠ random encoder", style="bold red")
        return Text(name)

    for r in result.metrics:
        rule = "0.5" if r["threshold_rule"] == "0.5" else f"youden {r['threshold']:.3f}"
        table.add_row(
            run_cell(r["run"]), _SPLIT_SHORT[r["split"]], rule, str(r["n"]),
            fmt_estimate(r["auc"], r["auc_ci"]), *(fmt_value(r[m]) for m in ("acc", "sens", "spec")),
            style="bold" if r["split"] == "test" else None,
        )  # fmt: skip
    for r in result.multiclass:
        table.add_row(
            run_cell(r["run"]), _SPLIT_SHORT[r["split"]], "argmax", str(r["n"]),
            f"{fmt_value(r['macro_auc'])} (macro)", fmt_value(r["acc"]), "–", "–",
            style="bold" if r["split"] == "test" else None,
        )  # fmt: skip
    return table


def report_summary(result: Any) -> Group:
    """The headline table, one line per warning, and where the report went."""
    warnings = [Text.assemble(("warning:", "bold yellow"), " ", warning) for warning in result.warnings]
    return Group(report_table(result), *warnings, Text(f"report written to {result.out}"))


def verify_summary(cache_dir: Path, problems: Sequence[Any]) -> Group | Text:
    if not problems:
        return Text(f"{cache_dir}: no problems found", style="bold green")
    table = Table(title=f"verify {cache_dir}: {len(problems)} problem(s)", title_justify="left")
    table.add_column("file", overflow="fold")
    table.add_column("problem", overflow="fold")
    for p in problems:
        table.add_row(Text(str(p.path)), Text(p.message))
    return Group(table)


def doctor_table(checks: Sequence[Any]) -> Table:
    table = Table(title="balnmp-cache doctor", title_justify="left")
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        status = Text(c.status, style=_STATUS_STYLE.get(c.status, "green"))
        table.add_row(Text(c.name), status, Text(c.detail), Text(c.fix or ""))
    return table
