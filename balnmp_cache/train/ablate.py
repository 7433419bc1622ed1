"""Ablation grids: expand, train every configuration in one process, resume, tabulate.

A grid file (``stages/ablations/*.toml``)::

    out = "out/demo/ablation"          # runs go to <out>/runs/<name>, tables to <out>/runs.csv, results.csv

    [base]                             # TrainConfig keys shared by every run (not `out`)
    cohort = "demo/bcnb"
    epochs = 30

    [grid]                             # TrainConfig keys, each a list of values, crossed
    cache = ["out/demo/cache"]
    head = ["balnmp", "abmil"]
    variant = ["image", "image_clinical", "clinical_only"]
    task = [0, 3, 4]
    bags_per_slide = ["auto", 4]       # "auto" = floor(n / N)
    seed = [0, 1, 2]

Repeated k-fold cross-validation is ``split = "kfold"`` in ``[base]`` with ``fold = ["all"]`` (every fold of
``folds``) and ``split_seed`` (one repeat per value: the folds are drawn again) in ``[grid]``.

``variant`` sets ``clinical`` and ``head``: ``image`` (clinical = false), ``image_clinical``
(clinical = true), ``clinical_only`` (head = clinical_only, clinical = true). A head that does not
read features (``uses_features = False``, e.g. the clinical-only one) does not depend on the encoder
or on the image heads' options, so it runs once per remaining axis, on the grid's first cache, with
its default options, and is labelled ``clinical_only`` in the tables. Each configuration is trained
by :func:`~balnmp_cache.train.run.run_train`; the features of a cache are loaded once for all of its
runs. Finished runs (see :func:`balnmp_cache.runs.is_finished`) are never redone; the tables are
rebuilt from all finished runs of the grid. Several ``ablate`` processes on one grid share its runs:
each run is claimed with its run directory's lock (:func:`balnmp_cache.runs.claim_run`), a run
another process holds is left to it, and every process waits for those at the end, so each ends
with complete tables.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from balnmp_cache.config import StageConfig, save_resolved, to_plain
from balnmp_cache.errors import ConfigError
from balnmp_cache.mil.catalog import head_spec
from balnmp_cache.outdir import OutputBusyError
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.runs import RunExistsError, claim_run, is_finished, read_run, write_csv
from balnmp_cache.train.config import TrainConfig

__all__ = ["AblationGrid", "AblationResult", "GridRun", "expand_grid", "grid_trainer", "run_ablation"]

log = logging.getLogger(__name__)

VARIANTS: dict[str, dict[str, Any]] = {
    "image": {"clinical": False},
    "image_clinical": {"clinical": True},
    "clinical_only": {"clinical": True, "head": "clinical_only", "head_options": {}},
}
_NOT_AXES = ("out", "force")  # every run has its own out; a finished run is never redone
_AXES = (*(name for name in TrainConfig.model_fields if name not in _NOT_AXES), "variant")
SUMMARY_COLUMNS = ["task", "encoder", "head", "variant", "N", "M", "seeds", "val AUC", "test AUC", "test AUC range"]


class AblationGrid(StageConfig):
    """An ablation grid file (see the module docstring)."""

    out: Path = Field(Path("out/ablation"), description="folder for the runs and the results tables")
    description: str = Field("", description="free text shown nowhere but kept with the resolved grid")
    base: dict[str, Any] = Field(default_factory=dict, description="TrainConfig keys shared by every run")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="TrainConfig keys (and 'variant') to cross")

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "group" in data:
            raise ConfigError("the ablation grid key 'group' was removed (training configurations together was no "
                              "faster; every run now trains alone); delete the line 'group = ...' from the grid file")
        return data

    @model_validator(mode="after")
    def _known_keys(self) -> AblationGrid:
        for table, keys in (("base", self.base), ("grid", self.grid)):
            for key in keys:
                if key not in _AXES or (table == "base" and key == "variant"):
                    valid = ", ".join(a for a in _AXES if table == "grid" or a != "variant")
                    raise ValueError(f"unknown key '{table}.{key}'; valid keys are: {valid}")
        for key, values in self.grid.items():
            if not values:
                raise ValueError(f"grid.{key} is an empty list; give at least one value")
        bad = [v for v in self.grid.get("variant", []) if v not in VARIANTS]
        if bad:
            raise ValueError(f"unknown variant(s) {bad}; valid variants are: {', '.join(VARIANTS)}")
        if "variant" in self.grid and ("clinical" in self.grid or "clinical" in self.base):
            raise ValueError("give either grid.variant or clinical, not both (variant sets clinical)")
        return self


@dataclass(frozen=True)
class GridRun:
    """One configuration of a grid: its run name and resolved TrainConfig (``out`` set)."""

    name: str
    variant: str
    config: TrainConfig


@dataclass
class AblationResult:
    """What ``run_ablation`` reports (the CLI renders it).

    Attributes:
        out: the grid's output folder.
        csv_path: ``results.csv``, one row per configuration over its seeds.
        n_runs: configurations in the grid.
        n_done_before: of those, runs already finished before this call (resumed).
        summary_columns, summary_rows: the results table for display.
    """

    out: Path
    csv_path: Path
    n_runs: int
    n_done_before: int
    summary_columns: list[str]
    summary_rows: list[dict[str, Any]]


def _reads_features(head: str) -> bool:
    return head_spec(head).uses_features


def _variant_of(cfg: TrainConfig) -> str:
    if not _reads_features(cfg.head):
        return "clinical_only"
    return "image_clinical" if cfg.clinical else "image"


def _cache_label(path: Path) -> str:
    try:
        from balnmp_cache.cache import resolve_cache_dir

        return resolve_cache_dir(path).name
    except Exception:  # a missing cache is reported when the run loads it
        return Path(path).name


def _run_name(cfg: TrainConfig, variant: str) -> str:
    """Readable and stable: task, cache, head, variant, N, M, (k-fold: fold, split seed,) seed, then a digest."""
    plain = to_plain(cfg.model_dump(exclude=set(_NOT_AXES)))
    digest = hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:8]
    cache = _cache_label(cfg.cache) if _reads_features(cfg.head) else "any"
    m = "auto" if cfg.bags_per_slide is None else str(cfg.bags_per_slide)
    folds = f"-fold{cfg.fold}-splitseed{cfg.split_seed}" if cfg.split == "kfold" else ""
    return f"task{cfg.task}-{cache}-{cfg.head}-{variant}-N{cfg.bag_size}-M{m}{folds}-seed{cfg.seed}-{digest}"


def expand_grid(grid: AblationGrid, *, out: Path | None = None) -> list[GridRun]:
    """Every configuration of ``grid``, deduplicated (clinical-only runs once per non-image axis).

    Raises:
        ConfigError: a combination is not a valid TrainConfig (the message names it).
    """
    out = Path(out or grid.out)
    grid = _all_folds(grid)
    axes = list(grid.grid)
    first_cache = (grid.grid.get("cache") or [grid.base.get("cache", TrainConfig.model_fields["cache"].default)])[0]
    runs: dict[str, GridRun] = {}
    for values in itertools.product(*(grid.grid[a] for a in axes)):
        data = dict(grid.base)
        combo = dict(zip(axes, values, strict=True))
        variant = combo.pop("variant", None)
        data.update(combo)
        if data.get("bags_per_slide") == "auto":
            data["bags_per_slide"] = None
        if variant is not None:
            data.update(VARIANTS[variant])
        head = data.get("head", TrainConfig.model_fields["head"].default)
        if not _reads_features(head):  # the encoder and the image heads' options do not matter: run it once
            data["cache"] = first_cache
            if head_spec(head).needs_clinical:
                data["clinical"] = True
            data["head_options"] = {}
        data["out"] = out / "runs" / "pending"
        try:
            cfg = TrainConfig.model_validate(data)
        except ValidationError as err:
            shown = ", ".join(f"{k}={v!r}" for k, v in zip(axes, values, strict=True))
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ConfigError(f"grid combination ({shown}) is not a valid train configuration: {problems}") from err
        name = _run_name(cfg, _variant_of(cfg))
        if name not in runs:
            runs[name] = GridRun(name, _variant_of(cfg), cfg.model_copy(update={"out": out / "runs" / name}))
    return list(runs.values())


def _all_folds(grid: AblationGrid) -> AblationGrid:
    """``grid.fold = ["all"]`` (k-fold cross-validation) as the list ``0 … folds - 1``.

    Raises:
        ConfigError: ``fold = ["all"]`` with ``folds`` varying in the grid (give the folds as numbers then).
    """
    if grid.grid.get("fold") != ["all"]:
        return grid
    if len(grid.grid.get("folds", [None])) > 1:
        raise ConfigError("grid.fold = ['all'] needs one value of folds; with several, list the folds as numbers")
    k = (grid.grid.get("folds") or [grid.base.get("folds", TrainConfig.model_fields["folds"].default)])[0]
    return grid.model_copy(update={"grid": {**grid.grid, "fold": list(range(int(k)))}})


def _row(run: GridRun) -> dict[str, Any] | None:
    if not is_finished(run.config.out):
        return None
    record = read_run(run.config.out)
    metrics = record.metrics
    cfg = run.config
    image = _reads_features(cfg.head)
    return {
        "run": run.name, "task": cfg.task, "task_name": record.task_name,
        "encoder": record.cache.get("encoder") if image else "-",
        "cache": _cache_label(cfg.cache) if image else "-",
        "head": cfg.head, "variant": run.variant, "N": cfg.bag_size,
        "M": "auto" if cfg.bags_per_slide is None else cfg.bags_per_slide, "seed": cfg.seed,
        "best_epoch": record.best_epoch, "epochs_run": record.epochs_run,
        "val_auc": metrics.get("val", {}).get("auc"), "test_auc": metrics.get("test", {}).get("auc"),
        "test_acc": metrics.get("test", {}).get("acc"), "seconds": record.seconds,
    }


def _stats(values: Sequence[float | None]) -> tuple[float | None, float | None, float | None, float | None]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None, None, None, None
    mean = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, sd, min(vals), max(vals)


def _tables(out: Path, rows: list[dict[str, Any]]) -> tuple[Path, list[dict[str, Any]]]:
    run_cols = ["run", "task", "task_name", "encoder", "cache", "head", "variant", "N", "M", "seed", "best_epoch",
                "epochs_run", "val_auc", "test_auc", "test_acc", "seconds"]
    write_csv(out / "runs.csv", run_cols, ([_cell(r[c]) for c in run_cols] for r in rows))
    keys = ("task", "task_name", "encoder", "cache", "head", "variant", "N", "M")
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    result_cols = [*keys, "n_seeds", "val_auc_mean", "val_auc_sd", "test_auc_mean", "test_auc_sd", "test_auc_min",
                   "test_auc_max"]
    csv_rows, summary = [], []
    for key, members in groups.items():
        v_mean, v_sd, _, _ = _stats([m["val_auc"] for m in members])
        t_mean, t_sd, t_min, t_max = _stats([m["test_auc"] for m in members])
        record = dict(zip(keys, key, strict=True))
        csv_rows.append([_cell(v) for v in (*key, len(members), v_mean, v_sd, t_mean, t_sd, t_min, t_max)])
        summary.append({
            "task": record["task_name"], "encoder": record["encoder"], "head": record["head"],
            "variant": record["variant"], "N": record["N"], "M": record["M"], "seeds": len(members),
            "val AUC": _pm(v_mean, v_sd), "test AUC": _pm(t_mean, t_sd),
            "test AUC range": None if t_min is None else f"{t_min:.3f}–{t_max:.3f}",
        })
    path = write_csv(out / "results.csv", result_cols, csv_rows)
    return path, summary


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _pm(mean: float | None, sd: float | None) -> str | None:
    return None if mean is None else f"{mean:.3f} ± {sd:.3f}"


def run_ablation(config: AblationGrid, *, progress: ProgressCallback | None = None) -> AblationResult:
    """Train every configuration of the grid ``config`` that is not finished yet, then tabulate.

    Features of a cache are loaded once and shared by all its runs; each run trains alone. Runs that
    another ``ablate`` process on the same grid is training are left to it and waited for.

    Args:
        config: the grid (``load_config(AblationGrid, path)``); runs go to ``config.out``.
        progress: receives ``runs`` (and ``epochs``) events.

    Raises:
        ConfigError: an invalid grid; CohortError / CacheError: bad data, before that data's runs start.
    """
    out = Path(config.out)
    runs = expand_grid(config, out=out)
    out.mkdir(parents=True, exist_ok=True)
    save_resolved(config, out, name="ablation.toml")
    done = [r for r in runs if is_finished(r.config.out)]
    pending = [r for r in runs if not is_finished(r.config.out)]
    log.info("ablation %s: %d configurations, %d finished before, %d to run", out, len(runs), len(done), len(pending))
    emit(progress, "start", "runs", total=len(runs))
    if done:
        emit(progress, "advance", "runs", steps=len(done))
    _train_pending(pending, progress=progress)
    emit(progress, "end", "runs")
    rows = [row for r in runs if (row := _row(r)) is not None]
    csv_path, summary = _tables(out, rows)
    return AblationResult(out=out, csv_path=csv_path, n_runs=len(runs), n_done_before=len(done),
                          summary_columns=list(SUMMARY_COLUMNS), summary_rows=summary)


class _Loaded:
    """The data the grid's runs share, loaded when a run first needs it: one cache at a time, every cohort."""

    def __init__(self) -> None:
        self.cache_path: str | None = None
        self.cache: Any = None
        self.sources: dict[tuple[str, str], Any] = {}
        self.cohorts: dict[str, Any] = {}

    def for_run(self, cfg: TrainConfig) -> dict[str, Any]:
        """``cache``, ``cohort`` and ``source`` keywords of :func:`run_train` for ``cfg``."""
        from balnmp_cache.cache import load_cache
        from balnmp_cache.cohort import load_cohort
        from balnmp_cache.train.engine import FeatureSource, resolve_device

        if self.cache_path != str(cfg.cache):
            self.cache, self.sources = None, {}  # free the previous cache before loading the next
            self.cache, self.cache_path = load_cache(Path(cfg.cache)), str(cfg.cache)
        if str(cfg.cohort) not in self.cohorts:
            self.cohorts[str(cfg.cohort)] = load_cohort(cfg.cohort)
        device = resolve_device(cfg.device)
        key = (str(device), cfg.precision)
        if key not in self.sources:
            self.sources[key] = FeatureSource(self.cache.features, device, precision=cfg.precision)
        return {"cache": self.cache, "cohort": self.cohorts[str(cfg.cohort)], "source": self.sources[key]}


def _train_one(run: GridRun, loaded: _Loaded, *, wait: bool, progress: ProgressCallback | None) -> bool:
    """Train ``run`` unless another process holds it; ``False`` when it was busy (and ``wait`` is false)."""
    from balnmp_cache.train.run import run_train

    try:
        with claim_run(run.config.out, wait=wait) as staged:
            log.info("training %s", run.name)
            run_train(run.config, **loaded.for_run(run.config), progress=progress, staged=staged)
    except RunExistsError:
        log.info("%s: finished by another process", run.name)
    except OutputBusyError:
        log.info("%s: busy, left to the other process", run.name)
        return False
    emit(progress, "advance", "runs", steps=1)
    return True


def _train_pending(pending: list[GridRun], *, progress: ProgressCallback | None) -> None:
    """Train every pending run, sharing the grid with other ``ablate`` processes run by run.

    A run another process is training is left to it at first (its lock is taken); once this process
    has done the rest, it waits for each of those runs and trains it only if the other process stopped
    before finishing it. Runs are taken cache by cache, so one cache is loaded at a time.
    """
    loaded = _Loaded()
    ordered = sorted(pending, key=lambda r: str(r.config.cache))
    busy = [run for run in ordered if not _train_one(run, loaded, wait=False, progress=progress)]
    for run in busy:
        _train_one(run, loaded, wait=True, progress=progress)


def grid_trainer() -> Callable[[GridRun], None]:
    """A function training one run of a grid exactly as ``ablate`` does (under its run directory's lock,
    waiting for another process that holds it), keeping the loaded cache and cohorts for the next run:
    what a long-lived worker of :mod:`balnmp_cache.engines` calls."""
    loaded = _Loaded()

    def train(run: GridRun) -> None:
        _train_one(run, loaded, wait=True, progress=None)

    return train
