"""``run_train``: one training configuration, from config to run directory.

config -> data (:func:`~balnmp_cache.train.data.prepare_task_data`) -> what the fit needs (bags,
clinical vectors, an initialised head) -> :func:`~balnmp_cache.train.fit.fit` -> every patient
scored on its evaluation bags -> :func:`balnmp_cache.runs.write_run`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache import runs
from balnmp_cache.config import to_plain
from balnmp_cache.errors import CohortError, ConfigError
from balnmp_cache.mil.catalog import head_spec
from balnmp_cache.progress import ProgressCallback
from balnmp_cache.train.bags import BagSet, EpochBags, eval_bags, official_bag_set
from balnmp_cache.train.config import TrainConfig
from balnmp_cache.train.data import TaskData, cache_provenance, prepare_task_data
from balnmp_cache.train.metrics import merge_bags, split_metrics

if TYPE_CHECKING:
    from balnmp_cache.cohort import ClinicalEncoder
    from balnmp_cache.outdir import Staged
    from balnmp_cache.train.engine import FeatureSource
    from balnmp_cache.train.fit import FitData, Fitted

__all__ = ["TrainResult", "build_head", "check_config", "clinical_flag", "run_train"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What one finished run reports (the CLI renders it).

    Attributes:
        run_dir: the run directory.
        task_name: e.g. ``N0 vs N(+)``.
        head: the MIL head.
        clinical: ``True``, ``False`` or ``"only"`` (a head that reads nothing but clinical data).
        best_epoch: the epoch selected on validation AUC (1-based).
        epochs_run: epochs trained before stopping.
        seconds: wall time of the run.
        metrics: split -> ``{"n", "auc", "acc"}`` on patient level.
    """

    run_dir: Path
    task_name: str
    head: str
    clinical: bool | str
    best_epoch: int
    epochs_run: int
    seconds: float
    metrics: dict[str, dict[str, Any]]


def clinical_flag(cfg: TrainConfig) -> bool | str:
    """``"only"`` for a head that reads clinical data and no features, else whether clinical data is fused."""
    spec = head_spec(cfg.head)
    return "only" if spec.needs_clinical and not spec.uses_features else bool(cfg.clinical)


def check_config(cfg: TrainConfig) -> None:
    """Cheap checks before anything is loaded.

    Raises:
        ConfigError: an unknown head, or a head that needs clinical data without it.
    """
    if head_spec(cfg.head).needs_clinical and not cfg.clinical:
        raise ConfigError(
            f"head {cfg.head!r} needs clinical data; pass --clinical (key 'clinical = true') or another --head"
        )


def build_head(cfg: TrainConfig, *, in_dim: int, n_classes: int, clinical_dim: int) -> Any:
    """The head of ``cfg``, initialised from ``cfg.seed`` without touching the global random state."""
    import torch

    from balnmp_cache.mil import create_head

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return create_head(cfg.head, in_dim=in_dim, n_classes=n_classes, clinical_dim=clinical_dim, **cfg.head_options)


def run_train(
    cfg: TrainConfig,
    *,
    cache: Any = None,
    cohort: Any = None,
    source: FeatureSource | None = None,
    progress: ProgressCallback | None = None,
    staged: Staged | None = None,
) -> TrainResult:
    """Train one configuration and write its run directory (``cfg.out``).

    The run is built in a staging folder beside ``cfg.out`` and swapped in when complete
    (:func:`balnmp_cache.runs.claim_run`): a finished run there is refused unless ``cfg.force``,
    another process writing it is refused at once, and an error or a crash leaves ``cfg.out`` as it was.

    Args:
        cfg: the configuration.
        cache: the loaded :class:`~balnmp_cache.cache.FeatureCache` of ``cfg.cache`` (loaded when ``None``;
            ``ablate`` shares one across its runs).
        cohort: the loaded cohort of ``cfg.cohort`` (loaded when ``None``).
        source: a :class:`~balnmp_cache.train.engine.FeatureSource` over ``cache`` (made when ``None``).
        progress: receives ``epochs`` events.
        staged: a claim of ``cfg.out`` already held (``ablate`` takes it to share a grid's runs).

    Raises:
        ConfigError, CohortError, CacheError: bad configuration, cohort or cache, before any training.
        RunExistsError, OutputBusyError: ``cfg.out`` holds a finished run (without ``force``) or is being written.
        OutputWriteError, OSError: the run cannot be written (a full or read-only disk).
    """
    check_config(cfg)
    if staged is not None:
        return _train(cfg, staged, cache=cache, cohort=cohort, source=source, progress=progress)
    with runs.claim_run(Path(cfg.out), force=cfg.force) as claim:
        return _train(cfg, claim, cache=cache, cohort=cohort, source=source, progress=progress)


def _train(
    cfg: TrainConfig, staged: Staged, *, cache: Any, cohort: Any, source: FeatureSource | None,
    progress: ProgressCallback | None,
) -> TrainResult:
    """:func:`run_train` once ``cfg.out`` is claimed: everything is written into ``staged.staging``."""
    from balnmp_cache.cache import load_cache
    from balnmp_cache.cohort import load_cohort
    from balnmp_cache.train.engine import FeatureSource, evaluate, resolve_device, torch_threads
    from balnmp_cache.train.fit import FitSettings, fit

    tic = time.perf_counter()
    device = source.device if source is not None else resolve_device(cfg.device)
    cohort = cohort if cohort is not None else load_cohort(cfg.cohort)
    cache = cache if cache is not None else load_cache(cfg.cache)
    data = prepare_task_data(cfg, cache, cohort)
    _check_classes(data)
    bags = _eval_bags(cfg, data)
    encoder, clinical = data.clinical(cfg.clinical_extra) if cfg.clinical else (None, None)
    head = build_head(cfg, in_dim=cache.feature_dim, n_classes=data.task.n_classes,
                      clinical_dim=0 if clinical is None else clinical.shape[1])
    source = source if source is not None else FeatureSource(cache.features, device, precision=cfg.precision)
    log.info("training %s on %s (%d patients, %d evaluation bags of N = %d)", cfg.out, source.device, data.n_patients,
             len(bags), cfg.bag_size)
    with torch_threads(cfg.threads):
        settings = FitSettings.from_config(cfg)
        fitted = fit(head, settings, _fit_data(cfg, data, bags, clinical), source, progress=progress)
        clin = None if clinical is None else _tensor(clinical, source.device)
        bag_probs, attention = evaluate(fitted.head, clin, bags, source, attention=True)
    probs, n_bags = merge_bags(bag_probs, bags.patient, data.n_patients, how=cfg.merge)
    scores = runs.Scores(
        patient_ids=data.patient_ids, probs=probs, n_bags=n_bags, bags=bags, attention=attention,
        patch_key=cache.patch_key, coords=cache.coords, split=data.split, labels=data.labels,
    )
    return _write(cfg, data, fitted, encoder, scores, seconds=time.perf_counter() - tic, source=source, staged=staged)


def _check_classes(data: TaskData) -> None:
    """Refuse a train split without every class; warn when the validation split lacks one."""
    counts = np.bincount(data.labels[data.in_split("train")], minlength=data.task.n_classes)
    empty = [data.task.classes[c] for c in range(data.task.n_classes) if counts[c] == 0]
    if empty:
        raise CohortError(
            f"the train split has no patients of class(es) {', '.join(empty)} for task {data.task.task} "
            f"({data.task.name}); check the split files or use split = 'kfold'"
        )
    if len(np.unique(data.labels[data.in_split("val")])) < data.task.n_classes:
        log.warning("the validation split lacks a class: the model is selected on validation loss instead of AUC")


def _eval_bags(cfg: TrainConfig, data: TaskData) -> BagSet:
    """Every patient's fixed evaluation bags (the official bags when ``bags = "official"``)."""
    if cfg.bags == "official":
        key_to_row = {str(k): i for i, k in enumerate(data.cache.patch_key)}
        return official_bag_set(data.patient_ids, data.official.bags, key_to_row,  # type: ignore[union-attr]
                                source=f"{cfg.official_json}/*-type-{cfg.task}.json")
    return eval_bags(data.rows, data.patient_ids, bag_size=cfg.bag_size)


def _fit_data(cfg: TrainConfig, data: TaskData, bags: BagSet, clinical: np.ndarray | None) -> FitData:
    """Labels, splits, the epochs' training bags and the validation bags of one fit."""
    from balnmp_cache.train.fit import FitData

    train = data.in_split("train")
    epoch_bags = EpochBags(
        rows=data.rows, patients=train, bag_size=cfg.bag_size, bags_per_patient=cfg.bags_per_slide,
        batch_bags=cfg.batch_bags, seed=cfg.seed, fixed=bags.select(train) if cfg.bags == "official" else None,
    )
    val = data.in_split("val")
    return FitData(labels=data.labels, train=train, val=val, train_bags=epoch_bags, val_bags=bags.select(val),
                   clinical=clinical, n_classes=data.task.n_classes)


def _tensor(array: np.ndarray, device: Any) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device)


def _write(
    cfg: TrainConfig, data: TaskData, fitted: Fitted, encoder: ClinicalEncoder | None, scores: runs.Scores, *,
    seconds: float, source: FeatureSource, staged: Staged,
) -> TrainResult:
    """Write the run into the staging folder (run.json last), swap it in and return the run's result."""
    from balnmp_cache import __version__

    metrics = {}
    for name in ("train", "val", "test"):
        idx = data.in_split(name)
        if len(idx):
            metrics[name] = split_metrics(data.labels[idx], scores.probs[idx])
    provenance = cache_provenance(data.cache)
    precision = "bf16" if source.autocast_dtype is not None else "fp32"
    head, clinical = fitted.head, clinical_flag(cfg)
    checkpoint = runs.Checkpoint(
        head=cfg.head, head_options=dict(cfg.head_options), in_dim=head.in_dim, n_classes=head.n_classes,
        clinical_dim=head.clinical_dim, classes=tuple(data.task.classes), task=data.task.task,
        task_name=data.task.name, state_dict={k: v.detach().cpu() for k, v in head.state_dict().items()},
        clinical_encoder=None if encoder is None else encoder.to_json(), bag_size=cfg.bag_size, bags=cfg.bags,
        merge=cfg.merge, precision=precision, cache=provenance, seed=cfg.seed, best_epoch=fitted.best_epoch,
    )
    record = runs.RunRecord(
        task=data.task.task, task_name=data.task.name, classes=tuple(data.task.classes), head=cfg.head,
        head_options=to_plain(cfg.head_options), clinical=clinical,
        clinical_features=() if encoder is None else tuple(encoder.names), seed=cfg.seed, cache=provenance,
        cohort=str(cfg.cohort), split=cfg.split, bags=cfg.bags, bag_size=cfg.bag_size,
        bags_per_slide=cfg.bags_per_slide, batch_bags=cfg.batch_bags, optimizer=cfg.optimizer,
        best_epoch=fitted.best_epoch, epochs_run=fitted.epochs_run, best_val_auc=fitted.best_val_auc, metrics=metrics,
        seconds=round(seconds, 3), train_seconds=round(fitted.seconds, 3), device=str(source.device),
        precision=precision, package_version=__version__,
    )
    saved = cfg.model_copy(update={"force": False})  # an action, not a setting: a config reused elsewhere never forces
    runs.write_run(staged.staging, config=saved, record=record, checkpoint=checkpoint, curves=fitted.curves,
                   scores=scores)
    staged.commit()
    log.info("%s: best epoch %d of %d, val AUC %s, test AUC %s", cfg.out, fitted.best_epoch, fitted.epochs_run,
             _fmt_auc(metrics.get("val", {}).get("auc")), _fmt_auc(metrics.get("test", {}).get("auc")))
    return TrainResult(run_dir=Path(cfg.out), task_name=data.task.name, head=cfg.head, clinical=clinical,
                       best_epoch=fitted.best_epoch, epochs_run=fitted.epochs_run, seconds=seconds, metrics=metrics)


def _fmt_auc(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"
