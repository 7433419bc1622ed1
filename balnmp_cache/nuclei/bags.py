"""Features as MIL instances: per WSI, one histogram per nucleus feature, written as a feature cache.

For every slide and each of the paper's eight features (:data:`FEATURES`) the values are quantised into
``n_bins`` bins and normalised to sum 1; the (8, n_bins) matrix is the slide's bag (N = 8 instances of
D = n_bins), stored like any extract output (``<out>/bags/nuclei-hist<n_bins>-<key>/<slide_id>.h5``,
``patch_key`` = the feature's name, ``coords`` 0, ``region_id`` -1), so ``balnmp-cache train --cache
<out>/bags --head abmil --bag-size 8`` trains on it and its attention ranks the features.

Values per feature: shape features of the nuclei not cut by the patch edge; ``density`` one value per
analysed patch (nuclei per mm² of its tissue, empty patches included); ``orientation`` the angle between
each nucleus's axis and its patch's mean axis (0-90°), the rotation-invariant part of an axial angle.
**Bin edges** are frozen on the training split: the pooled values of the slides whose patient is in the
cohort's ``train`` split give the quantiles k / n_bins (k = 1 … n_bins - 1); the outer bins are open, so
any value falls in one. ``orientation`` uses n_bins equal bins over 0-90° instead (nothing to learn).
The edges and where they came from are part of the cache key and written in its ``cache.json``.
Slides whose tables are in other units (µm vs px) cannot share edges: that is an error naming them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.cache import CacheDir, ManifestRow, SlideFeatures
from balnmp_cache.errors import CohortError, NucleiError
from balnmp_cache.fsio import atomic_write_text
from balnmp_cache.nuclei.measure import unit_names
from balnmp_cache.nuclei.stats import FEATURES, slide_summary
from balnmp_cache.nuclei.tables import TableDir, read_table
from balnmp_cache.slides import SlideJob

if TYPE_CHECKING:
    import pandas as pd

    from balnmp_cache.nuclei.config import NucleiConfig

__all__ = ["BagsOutcome", "build_bags", "feature_values", "histogram", "quantile_edges"]

log = logging.getLogger(__name__)

ORIENTATION_RANGE_DEG = 90.0


@dataclass
class BagsOutcome:
    """Where the bags went and what the user should know."""

    directory: Path
    summaries: Path
    notes: list[str] = field(default_factory=list)


def feature_values(nuclei: pd.DataFrame, patches: pd.DataFrame, *, physical: bool) -> dict[str, np.ndarray]:
    """The instance values of every feature of one slide (see the module docstring)."""
    names = unit_names(physical)
    whole = nuclei[~nuclei["border"].to_numpy(dtype=bool)]
    values = {}
    for feature in FEATURES:
        if feature == "density":
            column = patches[names["density"]].to_numpy(dtype=np.float64)
        elif feature == "orientation":
            column = whole["orientation_deviation_deg"].to_numpy(dtype=np.float64)
        else:
            column = whole[names.get(feature, feature)].to_numpy(dtype=np.float64)
        values[feature] = column[np.isfinite(column)]
    return values


def quantile_edges(pooled: np.ndarray, n_bins: int) -> list[float]:
    """The n_bins - 1 interior edges at the quantiles k / n_bins of ``pooled`` (empty input: zeros)."""
    if pooled.size == 0:
        return [0.0] * (n_bins - 1)
    return [float(v) for v in np.quantile(pooled, np.arange(1, n_bins) / n_bins)]


def histogram(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """(len(edges) + 1,) share of ``values`` per bin; bin k holds edges[k-1] <= v < edges[k] (outer bins open)."""
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)
    return counts / max(int(counts.sum()), 1)


def _train_slides(config: NucleiConfig, patients: dict[str, str]) -> tuple[set[str], str]:
    """Slide ids of the training split and a sentence saying where they came from."""
    if config.cohort is None:
        return set(patients), "all slides (no cohort given: pass --cohort to freeze the edges on its train split)"
    from balnmp_cache.cohort import load_cohort

    table = load_cohort(Path(config.cohort)).table
    train = set(table.index[table["split"] == "train"].astype(str))
    slides = {sid for sid, pid in patients.items() if pid in train}
    if not slides:
        raise CohortError(
            f"no slide belongs to a train patient of {config.cohort}; give the cohort of these slides (--cohort)"
        )
    return slides, f"train split of {config.cohort} ({len(slides)} slides)"


def _load(tables: TableDir, jobs: Sequence[SlideJob]) -> tuple[dict[str, Any], bool]:
    """Each slide's instance values, attributes and summary; whether the units are physical (all alike)."""
    loaded, units = {}, {}
    for job in jobs:
        table = read_table(tables.path(job.slide_id))
        units[job.slide_id] = table.attrs.get("units")
        physical = units[job.slide_id] == "um"
        loaded[job.slide_id] = (feature_values(table.nuclei, table.patches, physical=physical), table.attrs,
                                slide_summary(table.nuclei, table.patches, physical=physical))  # fmt: skip
    if len(set(units.values())) > 1:
        px = sorted(sid for sid, unit in units.items() if unit == "px")[:5]
        raise NucleiError(
            f"slides {', '.join(px)} have no MPP (features in px) while others are in µm; "
            "give their MPP with --slide-mpp (or an mpp column in a manifest) and re-run with --force"
        )
    return loaded, next(iter(units.values())) == "um"


def build_bags(tables: TableDir, jobs: Sequence[SlideJob], *, config: NucleiConfig) -> BagsOutcome:
    """Write the bag cache and ``summaries.csv`` for ``jobs`` (every one of them has its table).

    Raises:
        NucleiError: tables in mixed units; CohortError: a cohort without any of these slides' patients.
    """
    import pandas as pd

    loaded, physical = _load(tables, jobs)
    patients = {job.slide_id: job.patient_id for job in jobs}
    train, edges_from = _train_slides(config, patients)
    edges = {}
    for feature in FEATURES:
        if feature == "orientation":
            step = ORIENTATION_RANGE_DEG / config.n_bins
            edges[feature] = [step * k for k in range(1, config.n_bins)]
        else:
            pooled = np.concatenate([loaded[sid][0][feature] for sid in sorted(train)])
            edges[feature] = quantile_edges(pooled, config.n_bins)
    params = {"stage": "nuclei-bags", "tables_key": tables.key, "n_bins": config.n_bins, "features": list(FEATURES),
              "edges": edges, "edges_from": edges_from, "units": "um" if physical else "px"}  # fmt: skip
    cache = CacheDir.create(Path(config.out) / "bags", params, encoder="nuclei", mode=f"hist{config.n_bins}",
                            format="hdf5", dtype="float32")  # fmt: skip
    cache.recover()
    rows = [_write_bag(cache, job, loaded[job.slide_id], edges, config=config) for job in jobs]
    cache.record(rows)
    summary = pd.DataFrame([{"slide_id": job.slide_id, "patient_id": job.patient_id,
                             "in_train_edges": job.slide_id in train, **loaded[job.slide_id][2]} for job in jobs])
    summaries = atomic_write_text(Path(config.out) / "summaries.csv", summary.to_csv(index=False))
    notes = [f"bags: {len(jobs)} slides x {len(FEATURES)} features x {config.n_bins} bins in {cache.directory}; "
             f"edges from the {edges_from}"]  # fmt: skip
    log.info("%s", notes[0])
    return BagsOutcome(cache.directory, summaries, notes)


def _write_bag(
    cache: CacheDir, job: SlideJob, slide: tuple[dict[str, np.ndarray], dict[str, Any], dict[str, Any]],
    edges: dict[str, list[float]], *, config: NucleiConfig,
) -> ManifestRow:
    """Write one slide's bag (always: a slide's table may have been redone without changing the key)."""
    values, attrs, _ = slide
    bag = np.stack([histogram(values[f], edges[f]) for f in FEATURES]).astype(np.float32)  # (N=8, D=n_bins)
    features = list(FEATURES)
    sf = SlideFeatures(
        slide_id=job.slide_id, features=bag, coords=np.zeros((len(features), 2), dtype=np.int64),
        region_id=np.full(len(features), -1, dtype=np.int32), patch_key=np.array(features, dtype=object),
        attrs={"patient_id": job.patient_id, "source_path": str(job.path), "cache_key": str(cache.key),
               "encoder": "nuclei", "encoder_identifier": f"{attrs.get('segmenter', '')}+hist{config.n_bins}",
               "weights": "none", "weights_sha256": "", "random_weights": False, "mode": f"hist{config.n_bins}",
               "input_px": 0, "patch_px": config.patch_px,
               "n_nuclei": int(attrs.get("n_nuclei", 0)), "units": str(attrs.get("units", "")),
               "source_fingerprint": str(attrs.get("source_fingerprint", ""))},
    )  # fmt: skip
    cache.write(sf)
    return ManifestRow(slide_id=job.slide_id, patient_id=job.patient_id, source=str(job.path), status="ok",
                       n_patches=len(features))  # fmt: skip
