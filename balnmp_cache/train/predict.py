"""``run_predict``: apply a trained run to new slides or patients.

Sources are either feature caches (used as they are, after checking that they were extracted the
way the run's training cache was) or slides, folders and BCNB roots, which are first extracted
with the run's encoder settings (the training cache's ``config.toml``) into ``<out>/cache``.
Every patient is scored on its evaluation bags (``max(1, floor(n / N))`` bags of the run's N,
drawn from the patient's own patches with a generator of the patient id) and the bag probabilities
are merged as in training, so a patient gets the probabilities it got in training (for runs trained
with `bags = "random"`; runs on the official fixed bags were evaluated on those, which new slides lack).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.config import save_resolved
from balnmp_cache.errors import CacheError, CohortError, ConfigError
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.runs import Checkpoint, Scores, read_checkpoint, write_scores
from balnmp_cache.sorting import natural_key
from balnmp_cache.train.bags import BagSet, eval_bags
from balnmp_cache.train.config import PredictConfig
from balnmp_cache.train.data import patient_rows
from balnmp_cache.train.metrics import merge_bags

__all__ = ["PredictResult", "PredictRow", "clinical_vectors", "load_run", "run_predict"]

log = logging.getLogger(__name__)


@dataclass
class PredictRow:
    """One patient's prediction: class probabilities and the patches with the highest attention."""

    patient_id: str
    probabilities: list[float]
    top_patches: list[tuple[str, float]]


@dataclass
class PredictResult:
    """What ``run_predict`` reports: the output folder, class names and one row per patient."""

    out: Path
    classes: list[str]
    rows: list[PredictRow]


def load_run(run_dir: Path) -> tuple[Checkpoint, Any]:
    """The checkpoint of a run directory and its head (eval mode, on the CPU).

    Raises:
        ConfigError: no checkpoint, or one this version cannot read.
    """
    from balnmp_cache.mil import create_head

    ckpt = read_checkpoint(run_dir)
    head = create_head(ckpt.head, in_dim=ckpt.in_dim, n_classes=ckpt.n_classes, clinical_dim=ckpt.clinical_dim,
                       **ckpt.head_options)
    head.load_state_dict(ckpt.state_dict)
    return ckpt, head.eval()


def _as_cache(path: Path) -> Path | None:
    """The cache directory ``path`` names, or ``None`` when it is not a feature cache."""
    from balnmp_cache.cache import list_slide_files, resolve_cache_dir

    if not Path(path).is_dir():
        return None
    try:
        directory = resolve_cache_dir(path)
    except CacheError:
        return None
    return directory if list_slide_files(directory) else None


def _extract(ckpt: Checkpoint, sources: list[Path], out: Path, progress: ProgressCallback | None) -> Path:
    from balnmp_cache.config import load_config
    from balnmp_cache.extract import ExtractConfig, run_extract

    train_cache = Path(ckpt.cache["directory"])
    settings = train_cache / "config.toml"
    if not settings.is_file():
        raise CacheError(
            f"the run's training cache {train_cache} has no config.toml, so its encoder settings are unknown; "
            "extract the slides yourself with the same settings and pass that cache as SOURCE"
        )
    overrides = {"sources": [str(s) for s in sources], "out": str(out / "cache")}
    cfg = load_config(ExtractConfig, settings, overrides=overrides)
    log.info("extracting %d source(s) with the run's encoder settings (%s) into %s", len(sources), cfg.encoder, cfg.out)
    return run_extract(cfg, progress=progress).cache_dir


def _check_compatible(ckpt: Checkpoint, cache: Any) -> None:
    trained = ckpt.cache
    if cache.feature_dim != ckpt.in_dim:
        raise CacheError(
            f"features in {cache.directory} are {cache.feature_dim}-d but the run was trained on {ckpt.in_dim}-d "
            f"features of encoder {trained.get('encoder')}; pass slides (to extract them with the run's settings) or "
            "a cache of the same encoder"
        )
    key = str(cache.attrs.get("cache_key", ""))
    if key and trained.get("cache_key") and key != trained["cache_key"]:
        raise CacheError(
            f"{cache.directory} was extracted with other settings (cache key {key}) than the run's training cache "
            f"(cache key {trained['cache_key']}, encoder {trained.get('encoder')}); pass slides to extract them with "
            "the run's settings"
        )


def clinical_vectors(ckpt: Checkpoint, cohort: Path | None, patient_ids: list[str]) -> np.ndarray | None:
    """(P, K) clinical vectors of ``patient_ids`` encoded as the run encoded them; ``None`` for image-only runs.

    Raises:
        ConfigError, CohortError: the run fused clinical data and ``cohort`` is missing, lacks a patient or a value.
    """
    from balnmp_cache.cohort import ClinicalEncoder, load_cohort
    from balnmp_cache.cohort.table import format_rows

    if not ckpt.clinical_dim:
        return None
    if cohort is None:
        raise ConfigError("this run was trained with clinical data; pass --cohort with the patients' clinical table")
    table = load_cohort(cohort, require_outcome=False).table
    missing = [pid for pid in patient_ids if pid not in table.index]
    if missing:
        raise CohortError(f"patients with slides but no row in {cohort}:\n{format_rows(missing)}\n"
                          "add them to the cohort table (--cohort)")
    if ckpt.clinical_encoder is None:
        raise ConfigError(
            "this run's checkpoint fuses clinical data but lacks its clinical encoding; re-run the training"
        )
    encoder = ClinicalEncoder.from_json(ckpt.clinical_encoder)
    blank = [f"row {table.at[p, 'source_row']} (patient {p}): {c} is blank"
             for p in patient_ids for c in encoder.columns if _is_blank(table.at[p, c])]
    if blank:
        raise CohortError(f"clinical data incomplete in {cohort}:\n{format_rows(blank)}")
    return encoder.transform(table, patient_ids)


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def run_predict(config: PredictConfig, *, progress: ProgressCallback | None = None) -> PredictResult:
    """Score the patients of ``config.sources`` with the run in ``config.run_dir``.

    ``config.sources`` are feature caches, or slides / folders / BCNB roots to extract first;
    ``config.cohort`` holds the patients' clinical data (needed when the run fused clinical data);
    ``config.top_k`` patches with the highest attention are reported per patient. The output folder
    (``config.out_dir``) gets ``predictions.csv`` (patient_id, n_bags, p_0 … p_{C-1}), ``attention.csv``
    (patient_id, bag, patch_key, x, y, attention), the resolved ``config.toml`` and ``cache/`` when
    slides were extracted. ``progress`` receives ``predict`` events (and the extraction's).

    Raises:
        ConfigError, CacheError, CohortError: an unusable run, sources or cohort.
    """
    import torch

    from balnmp_cache.cache import load_cache
    from balnmp_cache.train.engine import FeatureSource, evaluate, resolve_device

    run_dir, cohort, top_k, out = config.run_dir, config.cohort, config.top_k, config.out_dir
    ckpt, head = load_run(run_dir)
    cache = load_cache(_cache_dir(ckpt, [Path(s) for s in config.sources], out, progress))
    _check_compatible(ckpt, cache)
    patient_ids = sorted(set(cache.patient_ids), key=natural_key)
    clinical = clinical_vectors(ckpt, cohort, patient_ids)
    rows = patient_rows(cache, patient_ids)
    if ckpt.bags == "official":
        log.warning(
            "this run was trained and evaluated on the official fixed bags; predictions use the standard "
            "evaluation bags (all floor(n/N) disjoint bags per patient), so they can differ from the run's own"
        )
    bags = eval_bags(rows, patient_ids, bag_size=int(ckpt.bag_size))
    emit(progress, "start", "predict", total=len(patient_ids))
    device = resolve_device("auto")
    source = FeatureSource(cache.features, device, precision=ckpt.precision)
    clin = None if clinical is None else torch.from_numpy(clinical).to(device)
    bag_probs, attention = evaluate(head.to(device), clin, bags, source, attention=True)
    probs, n_bags = merge_bags(bag_probs, bags.patient, len(patient_ids), how=ckpt.merge)
    emit(progress, "advance", "predict", steps=len(patient_ids))
    emit(progress, "end", "predict")
    save_resolved(config, out)
    write_scores(out, Scores(patient_ids=patient_ids, probs=probs, n_bags=n_bags, bags=bags, attention=attention,
                             patch_key=cache.patch_key, coords=cache.coords))
    probs = probs / probs.sum(axis=1, keepdims=True)
    log.info("predicted %d patient(s) with %s; written to %s", len(patient_ids), run_dir, out)
    return PredictResult(out=out, classes=list(ckpt.classes), rows=_rows(patient_ids, probs, bags, attention,
                                                                          cache.patch_key, top_k))


def _cache_dir(ckpt: Checkpoint, sources: list[Path], out: Path, progress: ProgressCallback | None) -> Path:
    """The one feature cache among ``sources``, or the cache the slides among them are extracted into."""
    if not sources:
        raise ConfigError("no SOURCE given; pass slides, folders, BCNB roots or a feature cache")
    caches = [_as_cache(s) for s in sources]
    if all(c is not None for c in caches):
        if len(set(caches)) > 1:
            raise ConfigError("pass one feature cache at a time as SOURCE (or slides to extract together)")
        return caches[0]  # type: ignore[return-value]
    if any(c is not None for c in caches):
        raise ConfigError("SOURCE mixes feature caches and slides; pass either one cache or slides")
    return _extract(ckpt, sources, out, progress)


def _rows(patient_ids: list[str], probs: np.ndarray, bags: BagSet, attention: np.ndarray, patch_key: np.ndarray,
          top_k: int) -> list[PredictRow]:
    """One row per patient: (P, C) ``probs`` and the ``top_k`` patches of its bags with the highest attention."""
    rows = []
    real = bags.rows >= 0
    for p, pid in enumerate(patient_ids):
        mine = (bags.patient == p)[:, None] & real  # (B, N)
        keys = patch_key[bags.rows[mine]]
        weights = attention[mine]
        top = np.argsort(-weights, kind="stable")[:top_k]
        rows.append(PredictRow(pid, [float(v) for v in probs[p]], [(str(keys[i]), float(weights[i])) for i in top]))
    return rows
