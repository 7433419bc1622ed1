"""The run directory: everything a trained run leaves behind, written atomically.

```
RUN_DIR/
    config.toml       the resolved TrainConfig
    run.json          task, classes, head, clinical, seed, cache provenance, metrics; "complete": true last
    checkpoint.pt     head weights + everything predict needs (head options, dims, classes, clinical encoder)
    curves.csv        epoch, lr, train_loss, train_auc, val_loss, val_auc, best, seconds
    attention.csv     patient_id, split, bag, patch_key, x, y, attention (every evaluation bag of every patient)
    predictions.csv   patient_id, split, label, n_bags, p_0 ... p_{C-1}  (the report's input)
```

``run.json`` is removed when a run starts and written last, so a run directory with
``run.json`` saying ``"complete": true`` and a ``predictions.csv`` is a finished run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.errors import ConfigError
from balnmp_cache.fsio import atomic_path, atomic_write_text

__all__ = [
    "CHECKPOINT",
    "RUN_JSON",
    "atomic_write_text",
    "cell",
    "is_finished",
    "read_run_json",
    "start_run",
    "write_attention",
    "write_checkpoint",
    "write_csv",
    "write_predictions",
    "write_run_json",
]

RUN_JSON = "run.json"
CHECKPOINT = "checkpoint.pt"
PREDICTIONS = "predictions.csv"
SPLIT_ORDER = ("train", "val", "test")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def cell(value: Any) -> str:
    """A CSV cell: '' for None/NaN, floats with 8 significant digits."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{float(value):.8g}"
    return str(value)


def start_run(run_dir: Path) -> None:
    """Mark ``run_dir`` as unfinished: ``run.json`` and the outputs of an earlier run are removed until it completes."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_JSON).unlink(missing_ok=True)  # first: without it the folder reads as unfinished
    for name in (PREDICTIONS, "attention.csv", "curves.csv"):
        (run_dir / name).unlink(missing_ok=True)


def is_finished(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a complete run (``run.json`` says so and ``predictions.csv`` exists)."""
    info = read_run_json(run_dir, missing_ok=True)
    return bool(info and info.get("complete") is True and (Path(run_dir) / PREDICTIONS).is_file())


def read_run_json(run_dir: Path, *, missing_ok: bool = False) -> dict[str, Any] | None:
    path = Path(run_dir) / RUN_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ConfigError(f"{run_dir} is not a finished run directory: {RUN_JSON} is missing; train it first") from None
    except json.JSONDecodeError as err:
        if missing_ok:
            return None
        raise ConfigError(f"{path} is not valid JSON ({err}); re-run the training") from err


def write_run_json(run_dir: Path, info: dict[str, Any]) -> Path:
    return atomic_write_text(Path(run_dir) / RUN_JSON, json.dumps(info, indent=2, sort_keys=False) + "\n")


def write_checkpoint(run_dir: Path, payload: dict[str, Any]) -> Path:
    import torch

    target = Path(run_dir) / CHECKPOINT
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def _split_order(patient_ids: Sequence[str], split: np.ndarray) -> list[int]:
    """Patient indices ordered by split (train, val, test), then as given."""
    return [i for name in SPLIT_ORDER for i in range(len(patient_ids)) if split[i] == name]


def write_predictions(
    path: Path,
    *,
    patient_ids: Sequence[str],
    split: np.ndarray,
    labels: np.ndarray | None,
    n_bags: np.ndarray,
    probs: np.ndarray,
) -> Path:
    """``predictions.csv``: patient_id, split, label, n_bags, p_0 … p_{C-1} (rows renormalised to sum 1)."""
    n_classes = probs.shape[1]
    probs = probs / probs.sum(axis=1, keepdims=True)
    header = ["patient_id", "split", "label", "n_bags", *(f"p_{c}" for c in range(n_classes))]
    rows = (
        [patient_ids[i], split[i], "" if labels is None else int(labels[i]), int(n_bags[i]), *(cell(v) for v in probs[i])]
        for i in _split_order(patient_ids, split)
    )
    return write_csv(path, header, rows)


def write_attention(
    path: Path,
    *,
    patient_ids: Sequence[str],
    split: np.ndarray | None,
    bag_rows: np.ndarray,
    bag_patient: np.ndarray,
    bag_number: np.ndarray,
    attention: np.ndarray,
    patch_key: np.ndarray,
    coords: np.ndarray,
) -> Path:
    """``attention.csv``: one line per patch of every evaluation bag (padding left out)."""
    b_idx, n_idx = np.nonzero(bag_rows >= 0)
    rows = bag_rows[b_idx, n_idx]
    patients = bag_patient[b_idx]
    pid = np.asarray(patient_ids, dtype=object)[patients]
    columns: list[Any] = [pid]
    header = ["patient_id"]
    if split is not None:
        columns.append(split[patients])
        header.append("split")
    columns += [bag_number[b_idx], patch_key[rows], coords[rows, 0], coords[rows, 1],
                [cell(v) for v in attention[b_idx, n_idx]]]
    header += ["bag", "patch_key", "x", "y", "attention"]
    return write_csv(path, header, zip(*(list(c) for c in columns), strict=True))
