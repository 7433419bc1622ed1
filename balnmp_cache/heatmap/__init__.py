"""Where the model looks: per-patch scores of a trained run drawn from the feature cache alone.

``run_heatmap(HeatmapConfig(run_dir=..., out=...))`` scores every cached patch of each slide in one pass with
the run's head (pre-softmax attention score, single-patch log-odds), draws the scores on the patch grid over
a thumbnail, writes top/bottom galleries, a cohort view, a scores table and a QuPath GeoJSON per slide, and an
index (``heatmaps.json``) the report links. See ``docs/heatmaps.md``.

Importing this package (or ``balnmp_cache.heatmap.config``) imports neither torch nor numpy: the names below
are resolved on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from balnmp_cache.lazy import lazy_attributes

if TYPE_CHECKING:
    from balnmp_cache.heatmap.config import HeatmapConfig
    from balnmp_cache.heatmap.index import read_index
    from balnmp_cache.heatmap.report_section import heatmap_section
    from balnmp_cache.heatmap.stage import HeatmapResult, run_heatmap

__all__ = ["HeatmapConfig", "HeatmapResult", "heatmap_section", "read_index", "run_heatmap"]

_HOMES = {
    "HeatmapConfig": "balnmp_cache.heatmap.config",
    "HeatmapResult": "balnmp_cache.heatmap.stage",
    "heatmap_section": "balnmp_cache.heatmap.report_section",
    "read_index": "balnmp_cache.heatmap.index",
    "run_heatmap": "balnmp_cache.heatmap.stage",
}


__getattr__ = lazy_attributes(__name__, _HOMES)
