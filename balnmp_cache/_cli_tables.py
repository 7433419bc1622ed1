"""The CLI's end-of-command summaries (rendering only; results come from the library).

Every summary is laid out with :mod:`balnmp_cache._cli_layout`, so it fits the screen, or folds at spaces,
at any width: no word, number, path or URL is split across lines. Ids are listed in natural order
(``2`` before ``10``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.text import Text

from balnmp_cache._cli_layout import Column, Entries, Grid, Paragraph
from balnmp_cache.sorting import natural_key

_STATUS_STYLE = {
    "ok": "green", "failed": "red", "empty": "yellow", "skipped": "dim", "warn": "yellow", "missing": "red"
}  # fmt: skip
# ablate's variants, as run.json's `clinical` says them (so that both read the same words)
_VARIANT_CLINICAL: dict[str, bool | str] = {"image": False, "image_clinical": True, "clinical_only": "only"}


def _num(header: str) -> Column:
    """A column of numbers: right-aligned, and wrapped only when the text columns cannot give way."""
    return Column(header, "right")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _inputs(clinical: bool | str | None) -> str:
    from balnmp_cache.report.predictions import clinical_label

    return clinical_label(clinical)


def _heading(label: str, value: Any) -> Paragraph:
    return Paragraph(Text.assemble((label, "bold"), " ", str(value)))


def demo_summary(summary: Any) -> Paragraph:
    """One paragraph: patients per class and split, slides written, where and how long."""
    counts = ", ".join(f"{k} {v}" for k, v in summary.class_counts.items())
    splits = ", ".join(f"{k} {v}" for k, v in summary.split_counts.items())
    tiffs = f" + {summary.n_slides_tiff} pyramidal" if summary.n_slides_tiff else ""
    return Paragraph(
        f"demo cohort: {summary.n_patients} patients ({counts}; {splits}), "
        f"{summary.n_slides_jpeg} JPEG{tiffs} slides in {summary.root} ({summary.seconds:.1f} s)"
    )


def _slide_grid(rows: Sequence[Any]) -> Grid:
    """One line per slide of a stage's result: slide, patient, status, patches, seconds, reason."""
    columns: list[Column | str] = ["slide", "patient", "status", _num("patches"), _num("seconds"), "reason"]
    cells = [
        [row.slide_id, row.patient_id, Text(row.status, style=_STATUS_STYLE.get(row.status, "")),
         str(row.n_patches), f"{row.seconds:.1f}", row.reason]
        for row in rows
    ]  # fmt: skip
    return Grid(columns, cells, spill=5)


def _slide_rows(heading: str, where: Any, rows: Sequence[Any]) -> list[Any]:
    """A heading, then the slides that did not simply succeed and the first ok ones (50 at most)."""
    ordered = sorted(rows, key=lambda r: (r.status == "ok", natural_key(r.slide_id)))
    problems = [r for r in ordered if r.status != "ok"]
    shown = (problems + [r for r in ordered if r.status == "ok"][: max(0, 10 - len(problems))])[:50]
    parts: list[Any] = [_heading(heading, where), _slide_grid(shown)]
    if len(ordered) > len(shown):
        parts.append(Paragraph(f"{len(ordered) - len(shown)} more ok slides not shown; see manifest.csv", style="dim"))
    return parts


def extract_summary(result: Any) -> Group:
    """Per-slide rows that did not simply succeed (then the first ok ones), and the totals."""
    parts = _slide_rows("extract →", result.cache_dir, result.rows)
    rate = result.n_patches / result.seconds if result.seconds else 0.0
    busy = f", {result.n_busy} left to another extract process" if result.n_busy else ""
    totals = (
        f"slides: {result.n_ok} ok, {result.n_skipped} already complete, {result.n_empty} empty, "
        f"{result.n_failed} failed{busy}; {result.n_patches} patches in {result.seconds:.1f} s = {rate:.1f} patches/s "
        f"end to end (reading {result.read_seconds:.1f} s on the reader thread, overlapped with encoding "
        f"{result.compute_seconds:.1f} s)"
    )
    parts.append(Paragraph(totals, style="bold red" if result.exit_code else "bold"))
    times = getattr(result, "times", None)
    if times is not None and times.loop:
        parts.append(Paragraph(f"time: {times.summary()}"))
    return Group(*parts)


def _accuracy_header(task_name: str | None) -> str:
    """``ACC@0.5`` for a binary task (p_1 >= 0.5, the official rule), ``ACC (argmax)`` for more classes."""
    from balnmp_cache.cohort.tasks import TASKS

    spec = next((s for s in TASKS.values() if s.name == task_name), None)
    if spec is None:
        return "ACC"
    return "ACC@0.5" if spec.is_binary else "ACC (argmax)"


def nuclei_summary(result: Any) -> Group:
    """Slides that did not simply succeed (then the first ok ones), the totals, where the tables and bags are."""
    parts = _slide_rows("nuclei →", result.tables_dir, result.rows)
    rate = result.n_patches / result.compute_seconds if result.compute_seconds else 0.0
    shard = f" (shard {result.shard[0]}/{result.shard[1]})" if result.shard[1] > 1 else ""
    totals = (
        f"slides{shard}: {result.n_ok} ok, {result.n_skipped} already complete, {result.n_empty} empty, "
        f"{result.n_failed} failed, {result.n_busy} left to another process; {result.n_nuclei} nuclei in "
        f"{result.n_patches} patches, {rate:.1f} patches/s segmenting; {result.seconds:.1f} s in all"
    )
    parts.append(Paragraph(totals, style="bold red" if result.exit_code else "bold"))
    if result.bags_dir is not None:
        parts.append(_heading("bags →", result.bags_dir))
    parts.extend(Paragraph(note) for note in result.notes)
    return Group(*parts)


def train_summary(result: Any) -> Group:
    """Patients, AUC and accuracy per split; the run's task, head, inputs and selected epoch."""
    columns: list[Column | str] = ["split", _num("patients"), _num("AUC"), _num(_accuracy_header(result.task_name))]
    rows = [[split, str(m.get("n")), _fmt(m.get("auc")), _fmt(m.get("acc"))] for split, m in result.metrics.items()]
    note = (
        f"task {result.task_name}, head {result.head}, {_inputs(result.clinical)}; best epoch {result.best_epoch} "
        f"of {result.epochs_run} (selected on validation AUC), {result.seconds:.1f} s"
    )
    return Group(_heading("train →", result.run_dir), Grid(columns, rows), Paragraph(note))


def ablation_summary(result: Any) -> Group:
    """The results table over seeds; columns with one value for every row go into a line above it."""
    columns: Sequence[str] = result.summary_columns
    rows = []
    for record in result.summary_rows:
        row = {col: _fmt(record.get(col)) for col in columns}
        if "variant" in row and row["variant"] in _VARIANT_CLINICAL:
            row["variant"] = _inputs(_VARIANT_CLINICAL[row["variant"]])
        rows.append(row)
    same = [c for c in columns if len(rows) > 1 and len({r[c] for r in rows}) == 1]
    shown = [c for c in columns if c not in same]
    numeric = {"N", "M", "seeds", "val AUC", "test AUC", "test AUC range"}
    grid = Grid([_num(c) if c in numeric else Column(c) for c in shown], [[r[c] for c in shown] for r in rows])
    parts: list[Any] = [_heading("ablation →", result.out)]
    if same:
        parts.append(Paragraph("; ".join(f"{c} {rows[0][c]}" for c in same), style="dim"))
    parts += [grid, Paragraph(f"{result.n_runs} runs ({result.n_done_before} resumed), results in {result.csv_path}")]
    return Group(*parts)


def predict_summary(result: Any) -> Group:
    """Class probabilities and the top-attention patches of each patient, in natural order; then the failures."""
    columns: list[Column | str] = ["patient", *(_num(f"p({name})") for name in result.classes), "top attention patches"]
    rows = [
        [row.patient_id, *(_fmt(p) for p in row.probabilities),
         "; ".join(f"{key} ({att:.2f})" for key, att in row.top_patches)]
        for row in sorted(result.rows, key=lambda r: natural_key(r.patient_id))
    ]  # fmt: skip
    parts: list[Any] = [Paragraph(Text("predictions", style="bold")), Grid(columns, rows, spill=len(columns) - 1)]
    if result.failures:
        parts.append(Paragraph(Text(f"not scored: {len(result.failures)}", style="bold red")))
        failed = [[f.patient_id, f.slide_id, f.reason] for f in result.failures]
        parts.append(Grid(["patient", "slide", "reason"], failed, spill=2))
    done = f"{len(result.rows)} patient(s) scored, {len(result.failures)} failure(s) (failures.csv)"
    parts.append(Paragraph(f"{done}; written to {result.out}", style="bold red" if result.failures else ""))
    return Group(*parts)


def heatmap_summary(result: Any) -> Group | Paragraph:
    """The slides that failed (the first 20), then the totals."""
    if result.message:
        return Paragraph(f"heatmap: {result.message}; written to {result.out}", style="yellow")
    shown = [r for r in result.rows if r.status == "failed"][:20]
    flat = sum(bool(r.flat) for r in result.rows)
    totals = Paragraph(
        f"slides: {result.count('ok')} drawn, {result.count('skipped')} already drawn, "
        f"{result.count('failed')} failed; "
        f"ranking score: {result.score_name}; attention near-uniform on {flat} of {len(result.rows)} slides; "
        f"written to {result.out}"
    )
    if not shown:
        return totals
    return Group(_heading("heatmap →", result.out), _slide_grid(shown), totals)


_SPLIT_SHORT = {"train": "T", "val": "V", "test": "I-T"}


def report_table(result: Any) -> Group:
    """Headline metrics per run × split × rule: AUC with its interval, ACC, SENS, SPEC.

    Test rows are bold; runs with a random encoder are marked in red. Full intervals are in ``report.md``.
    """
    from balnmp_cache.report.render import fmt_estimate, fmt_value

    level = f"{100 * (1 - result.alpha):g}% CI"
    columns: list[Column | str] = ["Run", "Split", "Threshold", _num("n"), _num(f"AUC ({level})"),
                                   *(_num(m) for m in ("ACC", "SENS", "SPEC"))]

    def run_cell(name: str) -> Text:
        if name in result.random_weight_runs:
            return Text(f"{name} ⚠ random encoder", style="bold red")
        return Text(name)

    rows: list[list[str | Text]] = []
    styles: list[str | None] = []
    for r in result.metrics:
        rule = "0.5" if r["threshold_rule"] == "0.5" else f"youden {r['threshold']:.3f}"
        rows.append([run_cell(r["run"]), _SPLIT_SHORT[r["split"]], rule, str(r["n"]),
                     fmt_estimate(r["auc"], r["auc_ci"]), *(fmt_value(r[m]) for m in ("acc", "sens", "spec"))])
        styles.append("bold" if r["split"] == "test" else None)
    for r in result.multiclass:
        rows.append([run_cell(r["run"]), _SPLIT_SHORT[r["split"]], "argmax", str(r["n"]),
                     f"{fmt_value(r['macro_auc'])} (macro)", fmt_value(r["acc"]), "–", "–"])
        styles.append("bold" if r["split"] == "test" else None)
    caption = f"T = train, V = val, I-T = test; intervals of every metric in {result.out / 'report.md'}"
    return Group(_heading("balnmp-cache report:", result.out), Grid(columns, rows, row_styles=styles),
                 Paragraph(caption, style="dim"))


def report_summary(result: Any) -> Group:
    """The headline table, one paragraph per warning, and where the report went."""
    warnings = [Paragraph(Text.assemble(("warning:", "bold yellow"), " ", w)) for w in result.warnings]
    return Group(report_table(result), *warnings, Paragraph(f"report written to {result.out}"))


def verify_summary(cache_dir: Path, problems: Sequence[Any]) -> Group | Paragraph:
    """One entry per problem: the file (relative to the cache when inside it) and what is wrong, natural order."""
    if not problems:
        return Paragraph(f"{cache_dir}: no problems found", style="bold green")

    def name(path: Path) -> str:
        return str(path.relative_to(cache_dir)) if path.is_relative_to(cache_dir) and path != cache_dir else str(path)

    ordered = sorted(problems, key=lambda p: natural_key(name(Path(p.path))))
    entries = Entries([([name(Path(p.path))], [p.message]) for p in ordered])
    return Group(Paragraph(Text(f"verify {cache_dir}: {len(problems)} problem(s)", style="bold")), entries)


def doctor_table(checks: Sequence[Any]) -> Group:
    """One entry per check: status, name, what was found and, for a warn/missing status, the fix."""
    rows = []
    for c in checks:
        bodies = [c.detail] + ([Text.assemble(("fix: ", "bold"), c.fix)] if c.fix else [])
        rows.append(([Text(c.status, style=_STATUS_STYLE.get(c.status, "green")), c.name], bodies))
    return Group(Paragraph(Text("balnmp-cache doctor", style="bold")), Entries(rows))
