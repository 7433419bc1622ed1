"""The run directory: one contract for everything a trained run leaves behind.

```
RUN_DIR/
    config.toml       the resolved TrainConfig
    run.json          a RunRecord with "complete": true; written last
    checkpoint.pt     a Checkpoint: head weights + everything predict needs (options, dims, classes, clinical encoder)
    curves.csv        epoch, lr, train_loss, train_auc, val_loss, val_auc, best, seconds
    attention.csv     patient_id, split, bag, patch_key, x, y, attention (every evaluation bag of every patient)
    predictions.csv   patient_id, split, label, n_bags, p_0 ... p_{C-1}  (the report's input)
```

Only this module names these files. :func:`start_run` marks a directory unfinished; :func:`write_run`
is the single place that writes a finished run (each file through :mod:`balnmp_cache.fsio`, ``run.json``
last); :func:`is_finished` tells a finished run; ``predict`` writes its two score files with :func:`write_scores`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from balnmp_cache.errors import ConfigError
from balnmp_cache.fsio import atomic_path, atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

    from balnmp_cache.config import StageConfig
    from balnmp_cache.train.bags import BagSet

__all__ = [
    "CURVE_COLUMNS", "Checkpoint", "RunFiles", "RunRecord", "Scores", "cell", "has_checkpoint", "is_finished",
    "read_attention", "read_checkpoint", "read_curves", "read_predictions", "read_run", "run_files", "start_run",
    "write_csv", "write_run", "write_scores",
]

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


_FILE_NAMES = ("config.toml", "run.json", "checkpoint.pt", "curves.csv", "attention.csv", "predictions.csv")


def run_files(run_dir: Path) -> RunFiles:
    """The paths of the files of ``run_dir`` (or of a predict folder, which holds the two score files)."""
    root = Path(run_dir)
    return RunFiles(root, *(root / name for name in _FILE_NAMES))


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


@dataclass(frozen=True)
class Scores:
    """Evaluation results to write: ``predictions.csv`` and ``attention.csv``.

    Attributes:
        patient_ids: (P,) patient ids; index = patient index.
        probs: (P, C) patient probabilities (rows are renormalised to sum 1 when written).
        n_bags: (P,) evaluation bags per patient.
        bags: the B evaluation bags: ``rows`` (B, N) feature rows (``-1`` = padding), ``patient`` (B,)
            and ``bag`` (B,), the bag's number within its patient.
        attention: (B, N) attention of every patch of every bag.
        patch_key: (R,) key of every feature row.
        coords: (R, 2) level-0 x, y of every feature row.
        split, labels: (P,) ``train``/``val``/``test`` and integer labels, or ``None`` outside a run
            (predict): then the files have no split and label columns and patients keep their order.
    """

    patient_ids: Sequence[str]
    probs: np.ndarray
    n_bags: np.ndarray
    bags: BagSet
    attention: np.ndarray
    patch_key: np.ndarray
    coords: np.ndarray
    split: np.ndarray | None = None
    labels: np.ndarray | None = None


def cell(value: Any) -> str:
    """A CSV cell: '' for None/NaN, floats with 8 significant digits."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{float(value):.8g}"
    return str(value)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file (``\\n`` line ends) atomically and return its path."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def start_run(run_dir: Path) -> None:
    """Mark ``run_dir`` as unfinished: ``run.json`` and the outputs of an earlier run are removed until it completes."""
    files = run_files(run_dir)
    files.root.mkdir(parents=True, exist_ok=True)
    files.run_json.unlink(missing_ok=True)  # first: without it the folder reads as unfinished
    for path in (files.predictions, files.attention, files.curves):
        path.unlink(missing_ok=True)


def write_run(
    run_dir: Path,
    *,
    config: StageConfig,
    record: RunRecord,
    checkpoint: Checkpoint,
    curves: Sequence[Mapping[str, Any]],
    scores: Scores,
) -> RunFiles:
    """Write every file of a finished run into ``run_dir``; ``run.json`` last, so a crash leaves it unfinished.

    ``config`` is saved as ``config.toml``, ``record`` as ``run.json``, ``checkpoint`` as ``checkpoint.pt``,
    ``curves`` (one mapping per epoch with the keys :data:`CURVE_COLUMNS`) as ``curves.csv`` and ``scores``
    as ``predictions.csv`` and ``attention.csv``. :func:`start_run` was called on ``run_dir`` before training.
    """
    import torch

    from balnmp_cache.config import save_resolved

    files = run_files(run_dir)
    save_resolved(config, files.root, name=files.config.name)
    with atomic_path(files.checkpoint) as tmp:
        torch.save(checkpoint.to_payload(), tmp)
    write_csv(files.curves, CURVE_COLUMNS, ([cell(row[c]) for c in CURVE_COLUMNS] for row in curves))
    write_scores(files.root, scores)
    atomic_write_text(files.run_json, json.dumps(record.to_json(), indent=2) + "\n")
    return files


def write_scores(folder: Path, scores: Scores) -> RunFiles:
    """Write ``attention.csv`` and ``predictions.csv`` of ``scores`` into ``folder``."""
    files = run_files(folder)
    _write_attention(files.attention, scores)
    _write_predictions(files.predictions, scores)
    return files


def _write_predictions(path: Path, scores: Scores) -> Path:
    """``predictions.csv``: patient_id, [split, label,] n_bags, p_0 … p_{C-1} (rows renormalised to sum 1).

    Patients are ordered by split (train, val, test), then as given; as given without splits.
    """
    probs = scores.probs / scores.probs.sum(axis=1, keepdims=True)  # (P, C)
    split, labels = scores.split, scores.labels
    header = ["patient_id", *([] if split is None else ["split", "label"]), "n_bags",
              *(f"p_{c}" for c in range(probs.shape[1]))]
    given = range(len(scores.patient_ids))  # patient indices in the order given
    order = given if split is None else [i for name in ("train", "val", "test") for i in given if split[i] == name]
    rows = []
    for i in order:
        known = [] if split is None else [split[i], "" if labels is None else int(labels[i])]
        rows.append([scores.patient_ids[i], *known, int(scores.n_bags[i]), *(cell(v) for v in probs[i])])
    return write_csv(path, header, rows)


def _write_attention(path: Path, scores: Scores) -> Path:
    """``attention.csv``: one line per patch of every evaluation bag (padding left out)."""
    bags = scores.bags
    b_idx, n_idx = np.nonzero(bags.rows >= 0)
    rows = bags.rows[b_idx, n_idx]
    patients = bags.patient[b_idx]
    columns: list[Any] = [np.asarray(scores.patient_ids, dtype=object)[patients]]
    header = ["patient_id"]
    if scores.split is not None:
        columns.append(scores.split[patients])
        header.append("split")
    columns += [bags.bag[b_idx], scores.patch_key[rows], scores.coords[rows, 0], scores.coords[rows, 1],
                [cell(v) for v in scores.attention[b_idx, n_idx]]]
    header += ["bag", "patch_key", "x", "y", "attention"]
    return write_csv(path, header, zip(*(list(c) for c in columns), strict=True))


def _run_json(run_dir: Path) -> dict[str, Any]:
    """The JSON object of ``run.json``; ConfigError when it is missing or not a JSON object."""
    path = run_files(run_dir).run_json
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        message = f"{run_dir} is not a finished run directory: {path.name} is missing; train it first"
        raise ConfigError(message) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({err}); fix or remove it, or train the run again") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object with task, classes, head, clinical, seed and cache")
    return data


def read_run(run_dir: Path) -> RunRecord:
    """The :class:`RunRecord` of ``run_dir``.

    Raises:
        ConfigError: ``run.json`` is missing, not valid JSON, or has a bad value (the message names the file).
    """
    try:
        return RunRecord.from_json(_run_json(run_dir))
    except ValueError as err:
        raise ConfigError(f"{run_files(run_dir).run_json}: {err}") from err


def is_finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run: ``run.json`` says complete and ``predictions.csv`` exists."""
    try:
        data = _run_json(run_dir)
    except ConfigError:
        return False
    return bool(data.get("complete") is True and run_files(run_dir).predictions.is_file())


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``train`` wrote ``run_dir`` (it holds a checkpoint), finished or not."""
    return run_files(run_dir).checkpoint.is_file()


def read_checkpoint(run_dir: Path) -> Checkpoint:
    """The :class:`Checkpoint` of ``run_dir``, loaded on the CPU.

    Raises:
        ConfigError: no checkpoint, or one this version cannot read.
    """
    import torch

    path = run_files(run_dir).checkpoint
    if not path.is_file():
        message = f"{run_dir} is not a trained run directory: {path.name} is missing; pass the --out of a train run"
        raise ConfigError(message)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise ConfigError(f"cannot read {path}: {err}; re-run the training") from err
    return Checkpoint.from_payload(payload, source=path)


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    return pd.read_csv(path, dtype={"patient_id": str})


def read_predictions(run_dir: Path) -> pd.DataFrame:
    """``predictions.csv`` of a run (or a predict folder); patient ids as strings."""
    return _read_csv(run_files(run_dir).predictions)


def read_attention(run_dir: Path) -> pd.DataFrame:
    """``attention.csv`` of a run (or a predict folder); patient ids as strings."""
    return _read_csv(run_files(run_dir).attention)


def read_curves(run_dir: Path) -> pd.DataFrame:
    """``curves.csv`` of a run (columns :data:`CURVE_COLUMNS`)."""
    return _read_csv(run_files(run_dir).curves)
