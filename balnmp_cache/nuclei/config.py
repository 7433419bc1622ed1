"""Configuration of the nucleus stage (``balnmp-cache nuclei`` / ``stages/nuclei.toml``).

The classical segmenter's defaults (:class:`~balnmp_cache.nuclei.classical.ClassicalParams`) are the
values tuned on CRCHistoPhenotypes img1-img50 (``benchmarks/tune_nuclei_crc.py``); sizes are in µm so they
hold at any resolution, and are converted with the patch's MPP (``fallback_mpp`` where a slide has none).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from balnmp_cache.config import StageConfig
from balnmp_cache.errors import ConfigError
from balnmp_cache.nuclei.classical import ClassicalParams
from balnmp_cache.shards import parse_shard

_D = ClassicalParams()  # the tuned defaults live with the segmenter

__all__ = ["NucleiConfig"]


class NucleiConfig(StageConfig):
    """Everything ``nuclei`` needs; keys of ``stages/nuclei.toml`` and ``--flags`` of the CLI."""

    sources: list[Path] = Field(
        default_factory=list,
        description="slide files, folders of slides or images, BCNB roots, BCNB pre-cut patches, or manifest CSVs",
    )
    out: Path = Field(Path("out/nuclei"), description="output root: tables/, bags/ and summaries.csv are written here")
    cohort: Path | None = Field(
        None, description="BCNB root or cohort CSV: its train split freezes the histogram bin edges (else all slides)"
    )
    segmenter: str = Field("classical", description="nucleus segmenter: classical | stardist | cellpose | hovernet")
    weights: Path | None = Field(None, description="local model weights of a learned segmenter (never downloaded)")
    shard: str | None = Field(
        None, description="'I/N': process only shard I (0-based) of N size-balanced shards; run the N at once"
    )
    # -- where the patches come from (as in extract) --------------------------------------------------------
    patch_px: int = Field(256, ge=16, le=4096, description="patch side in pixels at the read resolution")
    target_mpp: float | None = Field(None, gt=0, description="read at this µm/px instead of native resolution")
    magnification: float | None = Field(None, gt=0, description="read at this objective power instead of native")
    slide_mpp: float | None = Field(None, gt=0, description="µm/px of slides whose files carry none")
    patch_filter: Literal["white_ratio", "background"] = Field(
        "white_ratio", description="which patches are analysed, as in extract"
    )
    white_ratio_max: float = Field(0.3, gt=0, le=1, description="drop a patch when its white ratio is >= this")
    background_max: float = Field(0.5, gt=0, le=1, description="drop a patch when its background share is >= this")
    min_tissue: float = Field(0.5, gt=0, le=1, description="tissue share a patch needs when no annotation exists")
    prefer: Literal["jpeg", "pyramidal"] = Field("jpeg", description="which slide form of a BCNB root to read")
    batch_size: int = Field(32, ge=1, le=4096, description="patches per batch")
    num_workers: int = Field(2, ge=1, le=64, description="reader threads")
    # -- the classical segmenter -----------------------------------------------------------------------------
    fallback_mpp: float = Field(
        0.5, gt=0, description="µm/px assumed for the µm-sized settings of slides without MPP (features stay in px)"
    )
    smooth_sigma_um: float = Field(_D.smooth_sigma_um, ge=0, description="Gaussian sigma on the stain channels (µm)")
    threshold: Literal["otsu", "fixed"] = Field(_D.threshold, description="foreground: Otsu per patch, or threshold_od")
    otsu_scale: float = Field(_D.otsu_scale, gt=0, description="the Otsu threshold is multiplied by this")
    threshold_od: float = Field(
        _D.threshold_od, ge=0, description="haematoxylin OD: the fixed threshold, and the floor under Otsu"
    )
    dab_max_od: float = Field(
        _D.dab_max_od, gt=0, description="pixels above this DAB-channel OD are not nuclei (pigment, ink)"
    )
    seed_sigma_um: float = Field(
        _D.seed_sigma_um, ge=0, description="Gaussian sigma of the distance map whose maxima seed the watershed (µm)"
    )
    seed_h_um: float = Field(
        _D.seed_h_um, gt=0, description="a seed's distance-map peak must rise this much above the saddle (µm)"
    )
    min_area_um2: float = Field(_D.min_area_um2, ge=0, description="smaller objects are dropped (µm²)")
    max_area_um2: float = Field(_D.max_area_um2, gt=0, description="larger objects are dropped (µm²)")
    fill_holes: bool = Field(_D.fill_holes, description="fill holes in the foreground before splitting")
    # -- per-WSI histograms (the MIL bags) --------------------------------------------------------------------
    n_bins: int = Field(16, ge=2, le=256, description="bins per feature histogram (quantile edges of the train split)")
    min_patch_nuclei: int = Field(3, ge=2, description="nuclei a patch needs for its local orientation order")
    bags: bool = Field(True, description="write the histogram bag cache once every slide has its table")
    skip_errors: bool = Field(True, description="record a failing slide in the manifest and go on")
    force: bool = Field(False, description="redo slides that are already complete")

    @field_validator("shard")
    @classmethod
    def _shard_form(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_shard(value)
            except ConfigError as err:
                raise ValueError(str(err)) from err
        return value

    @field_validator("max_area_um2")
    @classmethod
    def _area_range(cls, value: float, info: object) -> float:
        data = getattr(info, "data", {})
        if value <= data.get("min_area_um2", 0.0):
            raise ValueError(f"max_area_um2 ({value}) must exceed min_area_um2 ({data.get('min_area_um2')})")
        return value

