"""Slides: readers (cuCIM, OpenSlide, tiffslide, PIL), annotations, patch grids and SOURCE resolution.

Importing this package loads numpy only; backend libraries are imported when a slide is opened.
"""

from balnmp_cache.slides.annotations import Region, clip_regions, find_annotation, load_regions
from balnmp_cache.slides.readers import (
    BACKENDS,
    BACKENDS_BY_SUFFIX,
    SlideReader,
    available_backends,
    best_level_for_downsample,
    open_slide,
    slide_id_for_path,
)
from balnmp_cache.slides.resolution import ResolutionPlan, plan_resolution
from balnmp_cache.slides.sources import SlideJob, parse_patch_name, patch_key, resolve_sources
from balnmp_cache.slides.tiling import (
    OFFICIAL_WHITE_RATIO_MAX,
    PatchCandidates,
    PatchMasks,
    apply_masks,
    background_ratio,
    passes_white_filter,
    region_candidates,
    tissue_candidates,
    tissue_mask,
    white_ratio,
)

__all__ = [
    "BACKENDS",
    "BACKENDS_BY_SUFFIX",
    "OFFICIAL_WHITE_RATIO_MAX",
    "PatchCandidates",
    "PatchMasks",
    "Region",
    "ResolutionPlan",
    "SlideJob",
    "SlideReader",
    "apply_masks",
    "available_backends",
    "background_ratio",
    "best_level_for_downsample",
    "clip_regions",
    "find_annotation",
    "load_regions",
    "open_slide",
    "parse_patch_name",
    "passes_white_filter",
    "patch_key",
    "plan_resolution",
    "region_candidates",
    "resolve_sources",
    "slide_id_for_path",
    "tissue_candidates",
    "tissue_mask",
    "white_ratio",
]
