"""What a run directory holds: the names of its files, ``run.json`` (:class:`RunRecord`) and ``checkpoint.pt``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from balnmp_cache.errors import ConfigError

__all__ = ["CHECKPOINT_FORMAT", "CURVE_COLUMNS", "FILE_NAMES", "Checkpoint", "RunFiles", "RunRecord", "run_files"]

CHECKPOINT_FORMAT = "balnmp-cache-run"
CURVE_COLUMNS = ("epoch", "lr", "train_loss", "train_auc", "val_loss", "val_auc", "best", "seconds")


@dataclass(frozen=True)
class RunFiles:
    """The paths of one run directory's files (they need not exist); made by :func:`run_files`."""

    root: Path
    config: Path
    run_json: Path
    checkpoint: Path
    curves: Path
    attention: Path
    predictions: Path


FILE_NAMES = ("config.toml", "run.json", "checkpoint.pt", "curves.csv", "attention.csv", "predictions.csv")


def run_files(run_dir: Path) -> RunFiles:
    """The paths of the files of ``run_dir`` (or of a predict folder, which holds the two score files)."""
    root = Path(run_dir)
    return RunFiles(root, *(root / name for name in FILE_NAMES))


@dataclass(frozen=True)
class RunRecord:
    """What ``run.json`` says about a finished run.

    Every field has a default so that older or hand-written files read; :func:`write_run` writes
    them all, after ``"complete": true``, in this order.

    Attributes:
        task, task_name, classes: the task (0-4), its name and the class names in label order.
        head, head_options, seed: the MIL head, its options and the training seed.
        clinical: ``True``/``False`` (clinical data fused), or ``"only"`` (a head that reads only it).
        clinical_features: the names of the clinical vector's entries.
        cache: training-cache provenance (encoder, weights, random_weights, cache_key, directory, ...).
        cohort, split, bags, bag_size, bags_per_slide, batch_bags, optimizer: training settings.
        best_epoch, epochs_run, best_val_auc, metrics: selection; split -> ``{"n", "auc", "acc"}``.
        seconds, train_seconds: wall time of the run and of the fit alone.
        group_size: always 1 (every run trains alone); kept so ``run.json`` keeps its keys.
        device, precision, package_version: where and how it ran.
    """

    task: int | None = None
    task_name: str | None = None
    classes: tuple[str, ...] | None = None
    head: str | None = None
    head_options: dict[str, Any] = field(default_factory=dict)
    clinical: bool | str | None = None
    clinical_features: tuple[str, ...] = ()
    seed: int | None = None
    cache: dict[str, Any] = field(default_factory=dict)
    cohort: str | None = None
    split: str | None = None
    bags: str | None = None
    bag_size: int | None = None
    bags_per_slide: int | None = None
    batch_bags: int | None = None
    optimizer: str | None = None
    best_epoch: int | None = None
    epochs_run: int | None = None
    best_val_auc: float | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float | None = None
    train_seconds: float | None = None
    group_size: int = 1
    device: str | None = None
    precision: str | None = None
    package_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``run.json``: ``"complete": true`` first, then every field."""
        return {"complete": True, **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """Read a ``run.json`` object; unknown keys are ignored, missing ones take their defaults.

        Raises:
            ValueError: ``task`` is not an integer or ``classes`` not a list (the message names the key).
        """
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        task = values.get("task")
        if task is not None and (not isinstance(task, int) or isinstance(task, bool)):
            raise ValueError(f"'task' must be an integer (0-4), got {task!r}")
        classes = values.get("classes")
        if classes is not None:
            if not isinstance(classes, list):
                raise ValueError(f"'classes' must be a list of class names, got {classes!r}")
            values["classes"] = tuple(str(c) for c in classes)
        if not isinstance(values.get("cache", {}), dict):
            values["cache"] = {}
        values["clinical_features"] = tuple(values.get("clinical_features") or ())
        return cls(**values)


@dataclass(frozen=True)
class Checkpoint:
    """What ``checkpoint.pt`` holds: the head's weights and everything needed to rebuild and apply it.

    Attributes:
        head, head_options, in_dim, n_classes, clinical_dim: the head's name, options, D, C and K.
        classes, task, task_name: the task.
        state_dict: parameter name -> CPU tensor (the selected epoch's weights).
        clinical_encoder: the clinical encoding fitted on the training split (JSON), or ``None``.
        bag_size, bags, merge, precision: N, ``random``/``official``, ``mean``/``max``, ``bf16``/``fp32``.
        cache, seed, best_epoch: training-cache provenance (as in :class:`RunRecord`), seed, selected epoch.
    """

    head: str
    head_options: dict[str, Any]
    in_dim: int
    n_classes: int
    clinical_dim: int
    classes: tuple[str, ...]
    task: int
    task_name: str
    state_dict: dict[str, Any]
    clinical_encoder: dict[str, Any] | None
    bag_size: int
    bags: str = "random"
    merge: Literal["mean", "max"] = "mean"
    precision: str = "auto"
    cache: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    best_epoch: int | None = None

    def to_payload(self) -> dict[str, Any]:
        """The dictionary ``torch.save`` writes: format and version first, then every field."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}  # "classes" keeps its place, as a list
        return {"format": CHECKPOINT_FORMAT, "version": 1, **values, "classes": list(self.classes)}

    @classmethod
    def from_payload(cls, payload: Any, *, source: Path) -> Checkpoint:
        """Read a loaded ``checkpoint.pt``.

        Raises:
            ConfigError: not a balnmp-cache run checkpoint, or one that lacks keys.
        """
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{source} is not a balnmp-cache run checkpoint")
        values = {f.name: payload[f.name] for f in fields(cls) if f.name in payload}
        try:
            return cls(**{**values, "classes": tuple(values.get("classes", ()))})
        except TypeError as err:
            raise ConfigError(f"{source} lacks keys this version needs ({err}); re-run the training") from err


