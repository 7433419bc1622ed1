"""Nucleus morphometry, the paper's §2.4 (``balnmp-cache nuclei``): segment, measure, histogram, compare.

Per slide, the nuclei of every analysed patch are segmented (:mod:`~balnmp_cache.nuclei.classical` by
default, or a learned model through :mod:`~balnmp_cache.nuclei.segmenters`), measured
(:mod:`~balnmp_cache.nuclei.features`) and written as one Parquet table (:mod:`~balnmp_cache.nuclei.tables`);
per WSI each feature's distribution becomes a histogram, the n histograms a bag written as a feature cache
that ``train`` reads (:mod:`~balnmp_cache.nuclei.bags`); :mod:`~balnmp_cache.nuclei.stats` compares N0
with N(+) feature by feature for the report.

Importing this package loads the configuration only (pydantic); ``run_nuclei`` and ``NucleiResult`` are
imported on first use, so the CLI can build its options at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from balnmp_cache.lazy import lazy_attributes
from balnmp_cache.nuclei.config import NucleiConfig as NucleiConfig

if TYPE_CHECKING:
    from balnmp_cache.nuclei.stage import NucleiResult as NucleiResult
    from balnmp_cache.nuclei.stage import run_nuclei as run_nuclei

__all__ = ["NucleiConfig", "NucleiResult", "run_nuclei"]

_STAGE = "balnmp_cache.nuclei.stage"
__getattr__ = lazy_attributes(__name__, {"NucleiResult": _STAGE, "run_nuclei": _STAGE})
