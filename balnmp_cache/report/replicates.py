"""Runs that repeat one configuration: seeds (mean ± SD, min–max) and k-fold cross-validation.

A run's training configuration is its folder's ``config.toml`` (written by ``train``). Two runs are
*seed replicates* when their configurations are equal but for ``seed`` (and ``out``, ``force``,
``device``, ``precision``, ``threads``, which do not change the model). They are *folds of one
cross-validation* when ``split = "kfold"`` and they are equal but for ``fold``, ``split_seed`` and
``seed``: one *repeat* is one ``(split_seed, seed)``, its folds' test splits are pooled into
out-of-fold predictions (each patient once).
"""

from __future__ import annotations

import logging
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from balnmp_cache.report.binary import binary_metrics
from balnmp_cache.report.predictions import RunPredictions

__all__ = ["Replicates", "crossval_records", "find_replicates", "read_train_config", "seed_records", "split_designs"]

log = logging.getLogger(__name__)

_NOT_MODEL = ("out", "force", "device", "precision", "threads")
_SEED_KEYS = ("seed",)
_FOLD_KEYS = ("seed", "fold", "split_seed", "splits_file")
SUMMARY_METRICS = ("auc", "acc", "sens", "spec", "ppv", "npv", "brier")


@dataclass(frozen=True)
class Replicates:
    """A group of runs repeating one configuration: ``label``, ``kind`` (``"seeds"``/``"kfold"``), ``runs``."""

    label: str
    kind: str
    runs: list[RunPredictions]
    configs: list[dict[str, Any]]


def read_train_config(run: RunPredictions) -> dict[str, Any] | None:
    """The run folder's ``config.toml`` as a dict, or ``None`` when it is absent or unreadable."""
    path = run.path.parent / "config.toml"
    if not path.is_file():
        return None
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        log.warning("run %s: %s is unreadable (%s): not grouped with other runs", run.name, path, err)
        return None


def split_designs(runs: Sequence[RunPredictions]) -> dict[str, tuple[Any, ...]]:
    """Per run with a ``config.toml``: how its patients were split (``split``, and for k-fold ``folds``, ``fold``,
    ``split_seed``); runs whose designs differ hold different patients by design and are not compared."""
    designs = {}
    for run in runs:
        config = read_train_config(run)
        if config is None:
            continue
        split = config.get("split")
        extra = tuple(config.get(k) for k in ("folds", "fold", "split_seed")) if split == "kfold" else ()
        designs[run.name] = (split, *extra)
    return designs


def _key(config: Mapping[str, Any], drop: Sequence[str]) -> str:
    return repr(sorted((k, repr(v)) for k, v in config.items() if k not in (*_NOT_MODEL, *drop)))


def _label(names: Sequence[str], kind: str) -> str:
    """The runs' common name: without seed and digest (seeds), also without fold and split seed (k-fold)."""
    stems = {re.sub(r"-seed\d+(-[0-9a-f]{8})?$", "", n) for n in names}
    if kind == "kfold":
        stems = {re.sub(r"-fold\d+-splitseed\d+$", "", s) for s in stems}
    return stems.pop() if len(stems) == 1 else f"{names[0]} and {len(names) - 1} more"


def find_replicates(runs: Sequence[RunPredictions]) -> list[Replicates]:
    """Seed groups (two or more runs differing only by seed) and cross-validations (two or more folds)."""
    configs = {r.name: c for r in runs if r.is_binary and (c := read_train_config(r)) is not None}
    chosen = [r for r in runs if r.name in configs]
    groups: list[Replicates] = []
    for kind, drop in (("seeds", _SEED_KEYS), ("kfold", _FOLD_KEYS)):
        buckets: dict[str, list[RunPredictions]] = {}
        for run in chosen:
            if kind == "kfold" and configs[run.name].get("split") != "kfold":
                continue
            buckets.setdefault(_key(configs[run.name], drop), []).append(run)
        for members in buckets.values():
            varying = "seed" if kind == "seeds" else "fold"
            if len({configs[r.name].get(varying) for r in members}) < 2:
                continue
            groups.append(Replicates(_label([r.name for r in members], kind), kind, members,
                                     [configs[r.name] for r in members]))
    return groups


def _spread(values: Sequence[float | None]) -> dict[str, Any]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"n": 0, "mean": None, "sd": None, "se": None, "min": None, "max": None}
    sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return {"n": len(vals), "mean": float(np.mean(vals)), "sd": sd,
            "se": None if sd is None else sd / math.sqrt(len(vals)), "min": min(vals), "max": max(vals)}


def seed_records(
    groups: Sequence[Replicates], metrics: Sequence[Mapping[str, Any]], *, rule: str, split: str = "test"
) -> list[dict[str, Any]]:
    """Per seed group, split and metric: mean, SD, s.e., min and max over the seeds (threshold ``rule``)."""
    by_run = {r["run"]: r for r in metrics if r["split"] == split and r["threshold_rule"] == rule}
    records = []
    for group in groups:
        if group.kind != "seeds":
            continue
        chosen = [by_run[r.name] for r in group.runs if r.name in by_run]
        if not chosen:
            continue
        seeds = [c.get("seed") for c in group.configs]
        for metric in SUMMARY_METRICS:
            records.append({"group": group.label, "split": split, "threshold_rule": rule, "metric": metric,
                            "seeds": seeds, **_spread([c.get(metric) for c in chosen])})
    return records


def _repeat_key(config: Mapping[str, Any]) -> tuple[Any, Any]:
    return config.get("split_seed", 0), config.get("seed", 0)


def _pooled(members: Sequence[RunPredictions], alpha: float) -> dict[str, Any]:
    frames = [r.split_frame("test") for r in members if "test" in r.splits]
    import pandas as pd

    pooled = pd.concat(frames, ignore_index=True)
    notes = []
    if pooled["patient_id"].duplicated().any():
        notes.append("a patient is in the test split of two folds: the folds do not partition the patients")
    record = binary_metrics(pooled["label"].to_numpy(), pooled["p_1"].to_numpy(), threshold=0.5, alpha=alpha)
    record["notes"] = notes + record["notes"]
    return record


def crossval_records(
    groups: Sequence[Replicates], metrics: Sequence[Mapping[str, Any]], *, alpha: float = 0.05
) -> list[dict[str, Any]]:
    """Per cross-validation and repeat: fold AUCs (mean ± s.e.) and the pooled out-of-fold metrics at 0.5."""
    test_auc = {r["run"]: r["auc"] for r in metrics if r["split"] == "test"}  # the AUC needs no threshold
    records = []
    for group in groups:
        if group.kind != "kfold":
            continue
        repeats: dict[tuple[Any, Any], list[int]] = {}
        for i, config in enumerate(group.configs):
            repeats.setdefault(_repeat_key(config), []).append(i)
        for (split_seed, seed), indices in sorted(repeats.items(), key=lambda kv: repr(kv[0])):
            members = [group.runs[i] for i in indices]
            folds = sorted(group.configs[i].get("fold", 0) for i in indices)
            k = group.configs[indices[0]].get("folds")
            pooled = _pooled(members, alpha)
            notes = []
            if k is not None and len(folds) < k:
                notes.append(f"{len(folds)} of {k} folds finished: the pooled predictions miss patients")
            notes += pooled.pop("notes")
            records.append({
                "group": group.label, "split_seed": split_seed, "seed": seed, "folds": folds, "k": k,
                "fold_auc": _spread([test_auc.get(r.name) for r in members]),
                "pooled": pooled, "notes": notes,
            })
    return records
