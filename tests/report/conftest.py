"""Synthetic runs and cohorts for the report tests: small, seeded, written as real files."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SPLIT_SIZES = {"train": 40, "val": 30, "test": 30}


def synthetic_labels(seed: int = 0, sizes: dict[str, int] | None = None) -> pd.DataFrame:
    """patient_id, split and a 0/1 label per patient (both classes in every split)."""
    rng = np.random.default_rng(seed)
    rows = []
    pid = 1
    for split, n in (sizes or SPLIT_SIZES).items():
        labels = np.array([0, 1, *rng.integers(0, 2, n - 2)])
        for label in labels:
            rows.append({"patient_id": str(pid), "split": split, "label": int(label)})
            pid += 1
    return pd.DataFrame(rows)


def binary_scores(labels: np.ndarray, *, strength: float, seed: int) -> np.ndarray:
    """Class-1 probabilities that separate the classes by ``strength``."""
    rng = np.random.default_rng(seed)
    logits = strength * (labels - 0.5) * 2 + rng.normal(size=len(labels))
    return 1.0 / (1.0 + np.exp(-logits))


def write_predictions(
    directory: Path,
    frame: pd.DataFrame,
    probabilities: np.ndarray,
    *,
    run_json: dict | None = None,
    n_bags: int = 3,
) -> Path:
    """Write ``directory/predictions.csv`` (and ``run.json``) and return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    table = frame[["patient_id", "split", "label"]].copy()
    table["n_bags"] = n_bags
    for c in range(probabilities.shape[1]):
        table[f"p_{c}"] = probabilities[:, c]
    table.to_csv(directory / "predictions.csv", index=False)
    if run_json is not None:
        (directory / "run.json").write_text(json.dumps(run_json), encoding="utf-8")
    return directory


def run_json(task: int = 0, *, random_weights: bool = False, classes: Sequence[str] = ("N0", "N(+)")) -> dict:
    return {
        "task": task,
        "task_name": {0: "N0 vs N(+)", 2: "N0 vs N+(1-2) vs N+(>2)"}.get(task, f"task {task}"),
        "classes": list(classes),
        "head": "attention",
        "clinical": False,
        "seed": 0,
        "cache": {"encoder": "efficientnet_lite0", "weights": "random" if random_weights else "imagenet",
                  "random_weights": random_weights},
    }


@pytest.fixture
def make_binary_run(tmp_path: Path) -> Callable[..., Path]:
    """Factory writing a binary run directory under ``tmp_path``."""

    def make(name: str, *, strength: float = 1.5, seed: int = 1, labels_seed: int = 0, random_weights: bool = False,
             with_json: bool = True) -> Path:
        frame = synthetic_labels(labels_seed)
        p1 = binary_scores(frame["label"].to_numpy(), strength=strength, seed=seed)
        return write_predictions(tmp_path / "runs" / name, frame, np.column_stack([1 - p1, p1]),
                                 run_json=run_json(0, random_weights=random_weights) if with_json else None)

    return make


def synthetic_cohort(patient_ids: Sequence[str], splits: Sequence[str], *, seed: int = 3) -> pd.DataFrame:
    """A cohort table shaped like ``load_cohort(...).table``."""
    rng = np.random.default_rng(seed)
    n = len(patient_ids)
    return pd.DataFrame(
        {
            "aln_status": rng.choice(["N0", "N+(1-2)", "N+(>2)"], n),
            "age": rng.normal(55, 12, n).round(0),
            "tumour_size_cm": rng.gamma(4, 0.55, n).round(1),
            "er": rng.choice(["Positive", "Negative"], n, p=[0.75, 0.25]),
            "pr": rng.choice(["Positive", "Negative"], n, p=[0.7, 0.3]),
            "her2": rng.choice(["Positive", "Negative"], n, p=[0.3, 0.7]),
            "split": list(splits),
            "Tumour Type": rng.choice(["Invasive ductal carcinoma", "Invasive lobular carcinoma", "Other"], n),
        },
        index=pd.Index([str(p) for p in patient_ids], name="patient_id"),
    )
