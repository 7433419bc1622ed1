"""Rich tables for the CLI's end-of-command summaries (rendering only; results come from the library)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

_STATUS_STYLE = {"ok": "green", "failed": "red", "empty": "yellow", "skipped": "dim", "warn": "yellow", "missing": "red"}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def extract_summary(result: Any) -> Group:
    """Per-slide rows that did not simply succeed, then the totals."""
    table = Table(title=f"extract → {result.cache_dir}", title_justify="left")
    for col in ("slide", "patient", "status", "patches", "seconds", "reason"):
        table.add_column(col, overflow="fold")
    rows = sorted(result.rows, key=lambda r: (r.status == "ok", r.slide_id))
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
        f"slides: {result.n_ok} ok, {result.n_skipped} already complete, {result.n_empty} empty, {result.n_failed} failed{busy}; "
        f"{result.n_patches} patches in {result.seconds:.1f} s = {rate:.1f} patches/s end to end "
        f"(reading {result.read_seconds:.1f} s on the reader thread, overlapped with encoding {result.compute_seconds:.1f} s)",
        style="bold red" if result.exit_code else "bold",
    )
    return Group(table, totals)


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
        table.add_row(Text(c.name), Text(c.status, style=_STATUS_STYLE.get(c.status, "green")), Text(c.detail), Text(c.fix or ""))
    return table
