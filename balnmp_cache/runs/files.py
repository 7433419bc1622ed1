"""Writing and reading a run directory's files (:func:`write_run`, :func:`write_scores`, the readers)."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.errors import ConfigError
from balnmp_cache.fsio import atomic_write_bytes, atomic_write_text
from balnmp_cache.runs.records import CURVE_COLUMNS, Checkpoint, RunFiles, RunRecord, run_files

if TYPE_CHECKING:
    import pandas as pd

    from balnmp_cache.config import StageConfig
    from balnmp_cache.train.bags import BagSet

__all__ = [
    "FREE_SPACE_RESERVE", "Scores", "cell", "check_free_space", "csv_text", "has_checkpoint", "is_finished",
    "read_attention", "read_checkpoint", "read_curves", "read_predictions", "read_run", "unfinished_reason",
    "write_csv", "write_run", "write_scores",
]

FREE_SPACE_RESERVE = 256 * 1024
"""Bytes that must stay free beyond a run's files before they are written (room for the log and the swap)."""


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


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV file's text (``\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file (``\\n`` line ends) atomically and return its path."""
    return atomic_write_text(path, csv_text(header, rows))


def check_free_space(folder: Path, n_bytes: int) -> None:
    """Refuse to start writing ``n_bytes`` into ``folder`` unless they and :data:`FREE_SPACE_RESERVE` fit.

    Raises:
        OSError: ENOSPC, naming ``folder``, when the filesystem has less free space.
    """
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    if free < n_bytes + FREE_SPACE_RESERVE:
        needed = f"{n_bytes + FREE_SPACE_RESERVE:,} bytes needed, {free:,} free"
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({needed})", str(folder))


def write_run(
    run_dir: Path,
    *,
    config: StageConfig,
    record: RunRecord,
    checkpoint: Checkpoint,
    curves: Sequence[Mapping[str, Any]],
    scores: Scores,
) -> RunFiles:
    """Write every file of a finished run into ``run_dir``; ``run.json`` last.

    ``config`` is saved as ``config.toml``, ``record`` as ``run.json``, ``checkpoint`` as ``checkpoint.pt``,
    ``curves`` (one mapping per epoch with the keys :data:`CURVE_COLUMNS`) as ``curves.csv`` and ``scores``
    as ``predictions.csv`` and ``attention.csv``. Every file is rendered in memory first and the free
    space checked for all of them (:func:`check_free_space`), so a full disk stops the run before its
    first byte. ``train`` calls this on the run's staging folder (:func:`balnmp_cache.runs.claim_run`),
    which is swapped in once this returns.

    Raises:
        OSError: a file cannot be written (ENOSPC also when the free space is short).
    """
    import tomli_w
    import torch

    from balnmp_cache.config import to_plain

    files = run_files(run_dir)
    payload = io.BytesIO()
    torch.save(checkpoint.to_payload(), payload)  # in memory: torch never meets a full disk itself
    contents: list[tuple[Path, bytes]] = [
        (files.config, tomli_w.dumps(to_plain(config)).encode()),
        (files.checkpoint, payload.getvalue()),
        (files.curves, csv_text(CURVE_COLUMNS, ([cell(row[c]) for c in CURVE_COLUMNS] for row in curves)).encode()),
        (files.attention, _attention_text(scores).encode()),
        (files.predictions, _predictions_text(scores).encode()),
        (files.run_json, (json.dumps(record.to_json(), indent=2) + "\n").encode()),  # last: marks the run finished
    ]
    files.root.mkdir(parents=True, exist_ok=True)
    check_free_space(files.root, sum(len(data) for _, data in contents))
    for path, data in contents:
        atomic_write_bytes(path, data)
    return files


def write_scores(folder: Path, scores: Scores) -> RunFiles:
    """Write ``attention.csv`` and ``predictions.csv`` of ``scores`` into ``folder``."""
    files = run_files(folder)
    atomic_write_text(files.attention, _attention_text(scores))
    atomic_write_text(files.predictions, _predictions_text(scores))
    return files


def _predictions_text(scores: Scores) -> str:
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
    return csv_text(header, rows)


def _attention_text(scores: Scores) -> str:
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
    return csv_text(header, zip(*(list(c) for c in columns), strict=True))


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


def unfinished_reason(run_dir: Path) -> str | None:
    """Why ``run_dir`` does not hold a finished run (``None`` when it does), e.g. ``run.json is missing``."""
    files = run_files(run_dir)
    if not files.root.is_dir():
        return "it does not exist"
    try:
        data = _run_json(run_dir)
    except ConfigError:
        return f"{files.run_json.name} is missing or unreadable"
    if data.get("complete") is not True:
        return f'{files.run_json.name} does not say "complete": true'
    if not files.predictions.is_file():
        return f"{files.predictions.name} is missing"
    return None


def is_finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a finished run: ``run.json`` says complete and ``predictions.csv`` exists."""
    return unfinished_reason(run_dir) is None


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
