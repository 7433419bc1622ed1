"""The report's inputs: each run's ``predictions.csv`` (validated) and its optional ``run.json``.

``predictions.csv`` has one row per patient and split with the columns ``patient_id``, ``split``
(``train``/``val``/``test``), ``label`` (integer class), ``n_bags`` and ``p_0`` … ``p_{C-1}``
(probabilities summing to 1). Rows are numbered as in the file: 1 is the first row after the header.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache import runs
from balnmp_cache.errors import ConfigError, ReportInputError
from balnmp_cache.sorting import natural_key

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PROBABILITY_TOLERANCE",
    "SPLITS",
    "SPLIT_LABELS",
    "RunInfo",
    "RunPredictions",
    "check_same_patients",
    "clinical_label",
    "comparable",
    "load_predictions",
    "load_runs",
]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_LABELS = {"train": "T (train)", "val": "V (val)", "test": "I-T (test)"}
REQUIRED_COLUMNS = ("patient_id", "split", "label", "n_bags")
PROBABILITY_TOLERANCE = 1e-3
"""Largest accepted ``|sum(p_c) - 1|`` of a row (room for probabilities rounded when written)."""
_RANGE_SLACK = 1e-6  # float32 softmax outputs may exceed 1 by an ulp; such values are clipped
_MAX_LISTED = 5
_PROB_COLUMN = re.compile(r"^p_(\d+)$")


def clinical_label(clinical: bool | str | None) -> str:
    """The words a reader uses for a run's inputs, from ``run.json``'s ``clinical`` (``True``, ``False``, ``"only"``).

    ``"image + clinical"``, ``"image only"`` or ``"clinical only"``; ``"inputs unknown"`` without a ``run.json``.
    """
    if clinical is None:
        return "inputs unknown"
    if clinical == "only":
        return "clinical only"
    return "image + clinical" if clinical is True else "image only"


@dataclass(frozen=True)
class RunInfo:
    """What ``run.json`` says about a run (every field ``None`` when the file is absent)."""

    task: int | None = None
    task_name: str | None = None
    classes: tuple[str, ...] | None = None
    head: str | None = None
    clinical: bool | str | None = None
    seed: int | None = None
    encoder: str | None = None
    weights: str | None = None
    random_weights: bool = False


@dataclass
class RunPredictions:
    """One run's validated predictions.

    Attributes:
        name: the run's name (its directory's name, made unique among the runs of a report).
        path: the ``predictions.csv`` it was read from.
        table: columns ``patient_id`` (str), ``split``, ``label`` (int), ``n_bags``, ``p_0`` … ``p_{C-1}``.
        n_classes: ``C``.
        info: the run's ``run.json``.
    """

    name: str
    path: Path
    table: pd.DataFrame
    n_classes: int
    info: RunInfo

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in label order (``run.json`` ``classes``, else ``"0"``, ``"1"`` …)."""
        return self.info.classes or tuple(str(c) for c in range(self.n_classes))

    @property
    def is_binary(self) -> bool:
        return self.n_classes == 2

    @property
    def splits(self) -> list[str]:
        """The splits present, in the order train, val, test."""
        present = set(self.table["split"])
        return [s for s in SPLITS if s in present]

    def split_frame(self, split: str) -> pd.DataFrame:
        """Rows of one split sorted by ``patient_id`` (empty if the split is absent)."""
        return self.table[self.table["split"] == split].sort_values("patient_id").reset_index(drop=True)

    def labels(self, split: str) -> np.ndarray:
        """``(n,)`` integer labels of a split, sorted by patient."""
        return self.split_frame(split)["label"].to_numpy(dtype=np.int64)

    def probabilities(self, split: str) -> np.ndarray:
        """``(n, C)`` class probabilities of a split, sorted by patient."""
        columns = [f"p_{c}" for c in range(self.n_classes)]
        return self.split_frame(split)[columns].to_numpy(dtype=np.float64)

    def scores(self, split: str) -> np.ndarray:
        """``(n,)`` binary score (probability of class 1) of a split, sorted by patient."""
        return self.split_frame(split)["p_1"].to_numpy(dtype=np.float64)

    def describe(self) -> str:
        """One line naming the run's task, head, inputs (``image + clinical`` …) and encoder, for tables."""
        info = self.info
        parts = [info.task_name or (f"task {info.task}" if info.task is not None else f"{self.n_classes} classes")]
        if info.head:
            parts.append(f"head {info.head}")
        if info.clinical is not None:
            parts.append(clinical_label(info.clinical))
        if info.encoder:
            parts.append(f"encoder {info.encoder} ({info.weights or 'weights unknown'})")
        return ", ".join(parts)


def comparable(a: RunPredictions, b: RunPredictions) -> bool:
    """Whether two runs predict the same thing: the same task, or without a task the same number of classes."""
    if a.info.task is not None and b.info.task is not None:
        return a.info.task == b.info.task
    return a.n_classes == b.n_classes


def _rows(frame: pd.DataFrame, mask: Any, column: str | None = None) -> str:
    """``rows 3 (patient 12), 7 (patient 15) and 4 more`` for the rows where ``mask`` holds."""
    hits = frame[np.asarray(mask, dtype=bool)]
    items = []
    for index, row in hits.head(_MAX_LISTED).iterrows():
        detail = f"patient {row['patient_id']}" if "patient_id" in row else ""
        if column is not None:
            detail += f"{', ' if detail else ''}{column}={row[column]!r}"
        items.append(f"{index + 1} ({detail})" if detail else str(index + 1))
    more = f" and {len(hits) - _MAX_LISTED} more" if len(hits) > _MAX_LISTED else ""
    return f"row{'s' if len(hits) > 1 else ''} {', '.join(items)}{more}"


def _read_table(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={"patient_id": str, "split": str}, keep_default_na=True)
    except pd.errors.EmptyDataError as err:
        raise ReportInputError(
            f"{path} is empty; a predictions.csv needs a header and one row per patient and split"
        ) from err
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ReportInputError(f"{path} is not a readable CSV file: {err}") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _probability_columns(path: Path, frame: pd.DataFrame) -> list[str]:
    indices = sorted(int(m.group(1)) for c in frame.columns if (m := _PROB_COLUMN.match(c)))
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    n_classes = max(indices[-1] + 1 if indices else 0, 2)
    missing += [f"p_{c}" for c in range(n_classes) if c not in indices]
    if missing:
        raise ReportInputError(
            f"{path} lacks the column(s) {', '.join(missing)}; found {', '.join(frame.columns)}. "
            "A predictions.csv needs patient_id, split, label, n_bags and p_0 ... p_{C-1} (C >= 2)"
        )
    return [f"p_{c}" for c in range(n_classes)]


def _validate(path: Path, frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    import pandas as pd

    prob_columns = _probability_columns(path, frame)
    n_classes = len(prob_columns)
    if frame.empty:
        raise ReportInputError(f"{path} has a header but no rows")
    frame = frame.copy()
    frame["patient_id"] = frame["patient_id"].astype("string").str.strip()
    if frame["patient_id"].isna().any() or (frame["patient_id"] == "").any():
        bad = frame["patient_id"].isna() | (frame["patient_id"] == "")
        raise ReportInputError(f"{path}: empty patient_id in {_rows(frame, bad)}")
    frame["split"] = frame["split"].astype("string").str.strip().str.lower()
    bad = ~frame["split"].isin(SPLITS).fillna(False)
    if bad.any():
        valid = ", ".join(SPLITS)
        raise ReportInputError(f"{path}: invalid split in {_rows(frame, bad, 'split')}; valid splits are {valid}")
    labels = pd.to_numeric(frame["label"], errors="coerce")
    bad = labels.isna() | (labels != labels.round()) | (labels < 0) | (labels >= n_classes)
    if bad.any():
        raise ReportInputError(
            f"{path}: invalid label in {_rows(frame, bad, 'label')}; labels must be integers 0..{n_classes - 1} "
            f"(one per column p_0..p_{n_classes - 1})"
        )
    frame["label"] = labels.astype(np.int64)
    n_bags = pd.to_numeric(frame["n_bags"], errors="coerce")
    bad = (n_bags.isna() & frame["n_bags"].notna()) | (n_bags < 0)
    if bad.any():
        raise ReportInputError(f"{path}: n_bags must be a non-negative number in {_rows(frame, bad, 'n_bags')}")
    frame["n_bags"] = n_bags
    for column in prob_columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() | (values < -_RANGE_SLACK) | (values > 1 + _RANGE_SLACK)
        if bad.any():
            raise ReportInputError(f"{path}: {column} is missing or outside [0, 1] in {_rows(frame, bad, column)}")
        frame[column] = values.clip(0.0, 1.0).astype(np.float64)
    total = frame[prob_columns].sum(axis=1)
    bad = (total - 1.0).abs() > PROBABILITY_TOLERANCE
    if bad.any():
        frame["sum(p)"] = total.round(6)
        raise ReportInputError(
            f"{path}: probabilities {prob_columns[0]}..{prob_columns[-1]} do not sum to 1 "
            f"(tolerance {PROBABILITY_TOLERANCE}) in {_rows(frame, bad, 'sum(p)')}"
        )
    duplicated = frame.duplicated(["patient_id", "split"], keep=False)
    if duplicated.any():
        raise ReportInputError(
            f"{path}: a patient appears more than once in one split in {_rows(frame, duplicated, 'split')}; "
            "keep one row per patient and split (merge the bags of a patient before writing)"
        )
    return frame[["patient_id", "split", "label", "n_bags", *prob_columns]], n_classes


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


def _read_run_json(folder: Path, n_classes: int) -> RunInfo:
    path = runs.run_files(folder).run_json
    if not path.is_file():
        return RunInfo()
    try:
        record = runs.read_run(folder)
    except ConfigError as err:
        raise ReportInputError(str(err)) from err
    classes = record.classes
    if classes is not None and len(classes) != n_classes:
        raise ReportInputError(
            f"{path}: 'classes' is {list(classes)!r} but predictions.csv beside it has {n_classes} probability "
            f"columns p_0..p_{n_classes - 1}; they must agree"
        )
    weights = record.cache.get("weights")
    return RunInfo(
        task=record.task,
        task_name=record.task_name,
        classes=classes,
        head=record.head,
        clinical=record.clinical,
        seed=record.seed,
        encoder=record.cache.get("encoder"),
        weights=None if weights is None else str(weights),
        random_weights=_flag(record.cache.get("random_weights", False)) or weights == "random",
    )


def _resolve(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        target = runs.run_files(path).predictions
        if not target.is_file():
            raise ReportInputError(
                f"run directory {path} has no {target.name}; pass a run directory written by "
                f"'balnmp-cache train' or the path of a {target.name}"
            )
        return target
    if not path.is_file():
        raise ReportInputError(f"{path} does not exist; pass run directories or predictions.csv files as PATH")
    return path


def _refuse_unfinished(csv_path: Path) -> None:
    """A trained run's folder (it has a checkpoint) must say it finished, else its files may be stale."""
    folder = csv_path.parent
    if not runs.has_checkpoint(folder):
        return  # a bare predictions.csv from elsewhere
    if not runs.is_finished(folder):
        raise ReportInputError(
            f"run {folder} is unfinished (no run.json marking it complete): its predictions.csv may be from an "
            "earlier or interrupted run; train it again, or pass a finished run"
        )


def load_predictions(path: Path, *, name: str | None = None) -> RunPredictions:
    """Read and validate one run.

    Args:
        path: a run directory (holding ``predictions.csv`` and optionally ``run.json``) or a
            ``predictions.csv``.
        name: the run's name; defaults to the name of the directory that holds the file.

    Raises:
        ReportInputError: the file is missing or invalid; the message names the file and the rows.
    """
    csv_path = _resolve(path)
    _refuse_unfinished(csv_path)
    frame, n_classes = _validate(csv_path, _read_table(csv_path))
    info = _read_run_json(csv_path.parent, n_classes)
    run_name = name or csv_path.resolve().parent.name
    log.debug("read %d rows of %d classes from %s", len(frame), n_classes, csv_path)
    return RunPredictions(name=run_name, path=csv_path, table=frame, n_classes=n_classes, info=info)


def load_runs(paths: Sequence[Path]) -> list[RunPredictions]:
    """Read every run; names are made unique (``parent/name`` first, then a numeric suffix)."""
    runs = [load_predictions(p) for p in paths]
    original = [r.name for r in runs]
    seen: set[str] = set()
    for run in runs:
        if original.count(run.name) > 1:
            run.name = f"{run.path.resolve().parent.parent.name}/{run.name}"
        base, k = run.name, 2
        while run.name in seen:
            run.name, k = f"{base}-{k}", k + 1
        seen.add(run.name)
    return runs


def check_same_patients(a: RunPredictions, b: RunPredictions, split: str) -> None:
    """Raise unless two runs hold the same patients with the same labels in ``split``.

    Raises:
        ReportInputError: naming both files and the first patient ids that differ.
    """
    fa, fb = a.split_frame(split), b.split_frame(split)
    ids_a, ids_b = set(fa["patient_id"]), set(fb["patient_id"])
    if ids_a != ids_b:
        only_a, only_b = sorted(ids_a - ids_b, key=natural_key), sorted(ids_b - ids_a, key=natural_key)

        def listed(ids: list[str]) -> str:
            more = f" and {len(ids) - _MAX_LISTED} more" if len(ids) > _MAX_LISTED else ""
            return ", ".join(ids[:_MAX_LISTED]) + more

        raise ReportInputError(
            f"runs '{a.name}' ({a.path}) and '{b.name}' ({b.path}) are the same task but hold different patients "
            f"in split '{split}': only in the first: {listed(only_a) or 'none'}; only in the second: "
            f"{listed(only_b) or 'none'}. Compare runs made on the same splits, or report them separately"
        )
    differ = fa["label"].to_numpy() != fb["label"].to_numpy()
    if differ.any():
        ids = list(fa["patient_id"][differ])
        raise ReportInputError(
            f"runs '{a.name}' ({a.path}) and '{b.name}' ({b.path}) give different labels to the same patients in "
            f"split '{split}': {', '.join(ids[:_MAX_LISTED])}{' and more' if len(ids) > _MAX_LISTED else ''}"
        )
