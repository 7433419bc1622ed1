"""Stage 3, ``report``: paper-grade statistics, tables and figures from the runs' predictions.

``run_report(ReportConfig(paths=..., out=...))`` reads each run's ``predictions.csv`` (and ``run.json``),
computes AUC/ACC/SENS/SPEC/PPV/NPV with MedCalc-style intervals for two threshold rules, paired
DeLong tests between runs, subgroups and Table 1 from the cohort, and writes JSON, CSV, PNG/SVG,
``report.md`` and a self-contained ``report.html``. The conventions are in ``docs/report-statistics.md``.
"""

from balnmp_cache.report.config import ReportConfig
from balnmp_cache.report.run import ReportResult, run_report

__all__ = ["ReportConfig", "ReportResult", "run_report"]
