"""``run_train``: one training run (or a group sharing data and batches) from config to run directory."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.config import to_plain
from balnmp_cache.errors import CohortError, ConfigError
from balnmp_cache.progress import ProgressCallback
from balnmp_cache.train.bags import eval_bags, official_bag_set
from balnmp_cache.train.config import TrainConfig
from balnmp_cache.train.data import TaskData, cache_provenance, prepare_task_data
from balnmp_cache.train.metrics import merge_bags, split_metrics

__all__ = ["GROUP_FIELDS", "TrainResult", "clinical_flag", "group_key", "run_train", "train_group"]

log = logging.getLogger(__name__)

GROUP_FIELDS: tuple[str, ...] = (
    "cache", "cohort", "task", "split", "official_json", "folds", "fold", "splits_file",
    "bag_size", "bags_per_slide", "bags", "batch_bags", "seed", "device", "precision", "threads",
)
"""Fields configurations must share to be trained together on the same batches."""


@dataclass
class TrainResult:
    """What one finished run reports (the CLI renders it).

    Attributes:
        run_dir: the run directory.
        task_name: e.g. ``N0 vs N(+)``.
        head: the MIL head.
        clinical: ``True``, ``False`` or ``"only"`` (clinical-only head).
        best_epoch: the epoch selected on validation AUC (1-based).
        epochs_run: epochs trained before stopping.
        seconds: wall time of the run (of its group when trained with others).
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
    """``"only"`` for the clinical-only head, else whether clinical data is fused."""
    return "only" if cfg.head == "clinical_only" else bool(cfg.clinical)


def group_key(cfg: TrainConfig) -> tuple[Any, ...]:
    """Configurations with equal keys can be trained in one :func:`train_group` call."""
    return tuple(repr(getattr(cfg, name)) for name in GROUP_FIELDS)


def check_config(cfg: TrainConfig) -> None:
    """Cheap checks before anything is loaded.

    Raises:
        ConfigError: an unknown head, or a clinical-only head without clinical data.
    """
    from balnmp_cache.mil import list_heads

    heads = list_heads()
    if cfg.head not in heads:
        raise ConfigError(f"unknown MIL head {cfg.head!r}; valid heads are: {', '.join(heads)} (--head / key 'head')")
    if cfg.head == "clinical_only" and not cfg.clinical:
        raise ConfigError("head 'clinical_only' needs clinical data; pass --clinical (key 'clinical = true') or another --head")


def build_head(cfg: TrainConfig, *, in_dim: int, n_classes: int, clinical_dim: int) -> Any:
    """The head of ``cfg``, initialised from ``cfg.seed`` without touching the global random state."""
    import torch

    from balnmp_cache.mil import create_head

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return create_head(cfg.head, in_dim=in_dim, n_classes=n_classes, clinical_dim=clinical_dim, **cfg.head_options)


def _eval_bags(cfg: TrainConfig, data: TaskData) -> Any:
    if cfg.bags == "official":
        key_to_row = {str(k): i for i, k in enumerate(data.cache.patch_key)}
        return official_bag_set(data.patient_ids, data.official.bags, key_to_row,  # type: ignore[union-attr]
                                source=f"{cfg.official_json}/*-type-{cfg.task}.json")
    return eval_bags(data.rows, data.patient_ids, bag_size=cfg.bag_size)


def _shared_plan(cfg: TrainConfig, data: TaskData) -> Any:
    from balnmp_cache.train.loop import SharedPlan

    train = data.in_split("train")
    counts = np.bincount(data.labels[train], minlength=data.task.n_classes)
    empty = [data.task.classes[c] for c in range(data.task.n_classes) if counts[c] == 0]
    if empty:
        raise CohortError(
            f"the train split has no patients of class(es) {', '.join(empty)} for task {data.task.task} "
            f"({data.task.name}); check the split files or use split = 'kfold'"
        )
    if len(np.unique(data.labels[data.in_split("val")])) < data.task.n_classes:
        log.warning("the validation split lacks a class: the model is selected on validation loss instead of AUC")
    eval_bags = _eval_bags(cfg, data)
    official_train = eval_bags.select(train) if cfg.bags == "official" else None
    return SharedPlan(
        rows=data.rows, labels=data.labels, train=train, val=data.in_split("val"), eval_bags=eval_bags,
        bag_size=cfg.bag_size, bags_per_patient=cfg.bags_per_slide, official_train=official_train,
        batch_bags=cfg.batch_bags, seed=cfg.seed, n_classes=data.task.n_classes,
    )


def train_group(
    cfgs: Sequence[TrainConfig],
    *,
    cache: Any = None,
    cohort: Any = None,
    source: Any = None,
    progress: ProgressCallback | None = None,
) -> list[TrainResult]:
    """Train configurations that share :data:`GROUP_FIELDS` together and write each run directory.

    Args:
        cfgs: the configurations (equal :func:`group_key`).
        cache: the loaded :class:`~balnmp_cache.cache.FeatureCache` of ``cfgs[0].cache`` (loaded when ``None``).
        cohort: the loaded cohort of ``cfgs[0].cohort`` (loaded when ``None``).
        source: a :class:`~balnmp_cache.train.loop.FeatureSource` over ``cache`` (made when ``None``).
        progress: receives ``epochs`` events.

    Raises:
        ConfigError, CohortError, CacheError: bad configuration or data, before any training.
    """
    from balnmp_cache.cache import load_cache
    from balnmp_cache.cohort import load_cohort
    from balnmp_cache.train.loop import FeatureSource, ModelPlan, evaluate, fit_models, resolve_device, torch_threads
    from balnmp_cache.runs import start_run

    if not cfgs:
        return []
    first = cfgs[0]
    if any(group_key(c) != group_key(first) for c in cfgs):
        raise ValueError("train_group needs configurations that share " + ", ".join(GROUP_FIELDS))
    for cfg in cfgs:
        check_config(cfg)
    tic = time.perf_counter()
    device = resolve_device(first.device)
    cohort = cohort if cohort is not None else load_cohort(first.cohort)
    cache = cache if cache is not None else load_cache(first.cache)
    data = prepare_task_data(first, cache, cohort)
    shared = _shared_plan(first, data)
    plans, encoders = [], []
    for cfg in cfgs:
        encoder, clinical = data.clinical(cfg.clinical_extra) if cfg.clinical else (None, None)
        head = build_head(cfg, in_dim=cache.feature_dim, n_classes=data.task.n_classes,
                          clinical_dim=0 if clinical is None else clinical.shape[1])
        plans.append(ModelPlan(
            name=str(cfg.out), head=head, clinical=clinical, seed=cfg.seed, optimizer=cfg.optimizer, lr=cfg.lr,
            weight_decay=cfg.weight_decay, momentum=cfg.momentum, t0=cfg.t0, t_mult=cfg.t_mult,
            class_weights=cfg.class_weights, merge=cfg.merge, epochs=cfg.epochs, patience=cfg.patience,
        ))
        encoders.append(encoder)
    source = source if source is not None else FeatureSource(cache.features, device, precision=first.precision)
    for cfg in cfgs:
        start_run(Path(cfg.out))
    log.info("training %d model(s) on %s (%d patients, %d evaluation bags of N = %d)", len(cfgs), source.device,
             data.n_patients, len(shared.eval_bags), first.bag_size)
    with torch_threads(first.threads):
        fitted = fit_models(plans, shared, source, progress=progress)
        clinicals = [None if p.clinical is None else _tensor(p.clinical, source.device) for p in plans]
        outputs = evaluate([f.head for f in fitted], clinicals, shared.eval_bags, source, attention=True)
    seconds = time.perf_counter() - tic
    results = []
    for cfg, fit, encoder, (bag_probs, attention) in zip(cfgs, fitted, encoders, outputs, strict=True):
        results.append(_write_run(cfg, data=data, eval_bags=shared.eval_bags, fit=fit, encoder=encoder, bag_probs=bag_probs,
                                   attention=attention, seconds=seconds, group_size=len(cfgs), device=source.device,
                                   precision=_resolved_precision(source)))
    return results


def _tensor(array: np.ndarray, device: Any) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(device)


def _write_run(
    cfg: TrainConfig,
    *,
    data: TaskData,
    eval_bags: Any,
    fit: Any,
    encoder: Any,
    bag_probs: np.ndarray,
    attention: np.ndarray,
    seconds: float,
    group_size: int,
    device: Any,
    precision: str,
) -> TrainResult:
    """Write the run directory of one trained model (run.json last) and return its result."""
    from balnmp_cache import __version__, runs

    run_dir = Path(cfg.out)
    probs, n_bags = merge_bags(bag_probs, eval_bags.patient, data.n_patients, how=cfg.merge)
    metrics = {}
    for name in ("train", "val", "test"):
        idx = data.in_split(name)
        if len(idx):
            metrics[name] = split_metrics(data.labels[idx], probs[idx])
    provenance = cache_provenance(data.cache)
    clinical = clinical_flag(cfg)
    checkpoint = runs.Checkpoint(
        head=cfg.head, head_options=dict(cfg.head_options), in_dim=fit.head.in_dim, n_classes=fit.head.n_classes,
        clinical_dim=fit.head.clinical_dim, classes=tuple(data.task.classes), task=data.task.task,
        task_name=data.task.name, state_dict={k: v.detach().cpu() for k, v in fit.head.state_dict().items()},
        clinical_encoder=None if encoder is None else encoder.to_json(), bag_size=cfg.bag_size, bags=cfg.bags,
        merge=cfg.merge, precision=precision, cache=provenance, seed=cfg.seed, best_epoch=fit.best_epoch,
    )
    record = runs.RunRecord(
        task=data.task.task, task_name=data.task.name, classes=tuple(data.task.classes), head=cfg.head,
        head_options=to_plain(cfg.head_options), clinical=clinical,
        clinical_features=() if encoder is None else tuple(encoder.names), seed=cfg.seed, cache=provenance,
        cohort=str(cfg.cohort), split=cfg.split, bags=cfg.bags, bag_size=cfg.bag_size,
        bags_per_slide=cfg.bags_per_slide, batch_bags=cfg.batch_bags, optimizer=cfg.optimizer,
        best_epoch=fit.best_epoch, epochs_run=fit.epochs_run, best_val_auc=fit.best_val_auc, metrics=metrics,
        seconds=round(seconds, 3), train_seconds=round(fit.seconds, 3), group_size=group_size, device=str(device),
        precision=precision, package_version=__version__,
    )
    scores = runs.Scores(
        patient_ids=data.patient_ids, probs=probs, n_bags=n_bags, bag_rows=eval_bags.rows,
        bag_patient=eval_bags.patient, bag_number=eval_bags.bag, attention=attention,
        patch_key=data.cache.patch_key, coords=data.cache.coords, split=data.split, labels=data.labels,
    )
    runs.write_run(run_dir, config=cfg, record=record, checkpoint=checkpoint, curves=fit.curves, scores=scores)
    log.info("%s: best epoch %d of %d, val AUC %s, test AUC %s", run_dir, fit.best_epoch, fit.epochs_run,
             _fmt_auc(metrics.get("val", {}).get("auc")), _fmt_auc(metrics.get("test", {}).get("auc")))
    return TrainResult(run_dir=run_dir, task_name=data.task.name, head=cfg.head, clinical=clinical,
                       best_epoch=fit.best_epoch, epochs_run=fit.epochs_run, seconds=seconds, metrics=metrics)


def run_train(cfg: TrainConfig, *, progress: ProgressCallback | None = None) -> TrainResult:
    """Train one configuration and write its run directory (``cfg.out``).

    Raises:
        ConfigError, CohortError, CacheError: bad configuration, cohort or cache, before any training.
    """
    return train_group([cfg], progress=progress)[0]


def _fmt_auc(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _resolved_precision(source: Any) -> str:
    return "bf16" if getattr(source, "autocast_dtype", None) is not None else "fp32"
