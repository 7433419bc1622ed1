"""Stage 3, ``report``: paper-grade statistics, tables and figures from the runs' predictions.

``run_report(ReportConfig(paths=..., out=...))`` reads each run's ``predictions.csv`` (and ``run.json``),
computes AUC/ACC/SENS/SPEC/PPV/NPV with MedCalc-style intervals for two threshold rules, paired
DeLong tests between runs, subgroups and Table 1 from the cohort, and writes JSON, CSV, PNG/SVG,
``report.md`` and a self-contained ``report.html``. The conventions are in ``docs/report-statistics.md``.

Importing this package (or ``balnmp_cache.report.config``) imports neither numpy nor pandas: the names
below are resolved on first use, so the CLI can read ``ReportConfig`` without loading the statistics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from balnmp_cache.lazy import lazy_attributes

if TYPE_CHECKING:
    from balnmp_cache.report.config import ReportConfig
    from balnmp_cache.report.run import ReportResult, run_report

__all__ = ["ReportConfig", "ReportResult", "run_report"]

_HOMES = {
    "ReportConfig": "balnmp_cache.report.config",
    "ReportResult": "balnmp_cache.report.run",
    "run_report": "balnmp_cache.report.run",
}


__getattr__ = lazy_attributes(__name__, _HOMES)
