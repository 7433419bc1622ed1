"""The synthetic BCNB-shaped demo cohort: H&E-like slides with a planted, documented signal.

``write_demo_cohort(out)`` writes slides (JPEG and pyramidal TIFF), tumour polygons, the clinical
spreadsheet and the split files in the layout of the BCNB release; see ``docs/demo-cohort.md``.
"""

from __future__ import annotations

from balnmp_cache.demo.cohort import DEFAULT_PATIENTS, MARKER, DemoSummary, write_demo_cohort

__all__ = ["DEFAULT_PATIENTS", "MARKER", "DemoSummary", "write_demo_cohort"]
