"""Labels, clinical rows and splits of the demo cohort, in BCNB's raw spreadsheet format.

The column names, their order and their value vocabulary follow BCNB's ``patient-clinical-data.xlsx``
(see ``docs/demo-cohort.md``). Values are drawn to look like BCNB's cohort statistics (age 57.6 +- 12.5
years, tumour size 2.2 +- 0.9 cm, about 79% ER positive, 26% HER2 positive) with a weak planted link between
the ALN status and both tumour size and ER status (:mod:`balnmp_cache.demo.planted`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.cohort.table import BCNB_COLUMNS, SPLITS
from balnmp_cache.demo.planted import ALN_CLASSES, CLASS_SHARES, ER_NEGATIVE_RATE, TUMOUR_SIZE_CM
from balnmp_cache.fsio import atomic_path

__all__ = ["CLINICAL_COLUMNS", "SPLITS", "assign_labels", "assign_splits", "clinical_row", "write_clinical",
           "write_splits"]

CLINICAL_COLUMNS = BCNB_COLUMNS  # BCNB's raw clinical columns, in the release's order
_SPLIT_SHARES = {"val": 0.2, "test": 0.2}


def assign_labels(rng: np.random.Generator, n_patients: int) -> list[str]:
    """ALN status of patients 1..n: class sizes by largest remainder of :data:`CLASS_SHARES`, shuffled.

    Every class gets at least one patient when ``n_patients >= 3``.
    """
    exact = np.array([CLASS_SHARES[c] * n_patients for c in ALN_CLASSES])
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n_patients - counts.sum()]:
        counts[i] += 1
    while n_patients >= len(ALN_CLASSES) and counts.min() == 0:
        counts[np.argmax(counts)] -= 1
        counts[np.argmin(counts)] += 1
    labels = np.repeat(np.array(ALN_CLASSES), counts)
    return [str(label) for label in rng.permutation(labels)]


def assign_splits(rng: np.random.Generator, labels: list[str]) -> dict[int, str]:
    """Stratified ~60/20/20 train/val/test split of patient ids 1..n (one class at a time)."""
    split: dict[int, str] = {}
    for cls in ALN_CLASSES:
        ids = [pid for pid, label in enumerate(labels, start=1) if label == cls]
        ids = [int(pid) for pid in rng.permutation(ids)]
        n_val = math.floor(_SPLIT_SHARES["val"] * len(ids) + 0.5)
        n_test = math.floor(_SPLIT_SHARES["test"] * len(ids) + 0.5)
        for i, pid in enumerate(ids):
            split[pid] = "val" if i < n_val else "test" if i < n_val + n_test else "train"
    return dict(sorted(split.items()))


def _pos(flag: bool) -> str:
    return "Positive" if flag else "Negative"


def clinical_row(rng: np.random.Generator, patient_id: int, aln_status: str) -> dict[str, Any]:
    """One patient's row with BCNB's raw columns; values depend only on ``rng`` and the label."""
    node_positive = aln_status != "N0"
    group = "N+" if node_positive else "N0"
    age = int(np.clip(round(rng.normal(57.6, 12.5)), 26, 86))
    size_mean, size_sd = TUMOUR_SIZE_CM[group]
    size = float(np.clip(round(rng.normal(size_mean, size_sd), 1), 0.5, 7.0))
    er = rng.random() >= ER_NEGATIVE_RATE[group]
    pr = rng.random() < (0.90 if er else 0.12)
    her2 = rng.random() < 0.26
    if her2:
        expression = "3+" if rng.random() < 0.75 else "2+"
    else:
        expression = str(rng.choice(["0", "1+", "2+"], p=[0.30, 0.45, 0.25]))
    grade = int(rng.choice([1, 2, 3], p=[0.10, 0.55, 0.35] if not node_positive else [0.07, 0.50, 0.43]))
    ki67 = float(np.clip(round(rng.beta(1.6, 4.5), 2), 0.01, 0.95))
    if her2:
        subtype = "Luminal B" if er or pr else "HER2(+)"
    elif not er and not pr:
        subtype = "Triple negative"
    else:
        subtype = "Luminal A" if ki67 < 0.14 and pr else "Luminal B"
    if aln_status == "N0":
        nodes = 0
    elif aln_status == "N+(1-2)":
        nodes = int(rng.integers(1, 3))
    else:
        nodes = int(min(3 + rng.geometric(0.25) - 1, 40))
    return {
        "Patient ID": patient_id,
        "Age(years)": age,
        "Tumour Size(cm)": size,
        "Tumour Type": str(rng.choice(["Invasive ductal carcinoma", "Invasive lobular carcinoma", "Other type"],
                                      p=[0.87, 0.05, 0.08])),
        "ER": _pos(er),
        "PR": _pos(pr),
        "HER2": _pos(her2),
        "HER2 Expression": expression,
        "Histological grading": grade,
        "Surgical": str(rng.choice(["Modified Radical Mastectomy", "Breast-conserving surgery"], p=[0.8, 0.2])),
        "Ki67": ki67,
        "Molecular subtype": subtype,
        "Number of lymph node metastases": nodes,
        "ALN status": aln_status,
    }


def write_clinical(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``patient-clinical-data.xlsx`` (one sheet, BCNB's columns in order) atomically."""
    import pandas as pd

    table = pd.DataFrame(rows, columns=list(CLINICAL_COLUMNS))
    with atomic_path(path) as tmp:
        table.to_excel(tmp, index=False, engine="openpyxl")


def write_splits(folder: Path, split: dict[int, str]) -> dict[str, int]:
    """Write ``{train,val,test}_id.txt`` (one patient id per line, ascending); returns patients per split."""
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in SPLITS:
        ids = [pid for pid, s in split.items() if s == name]
        (folder / f"{name}_id.txt").write_text("".join(f"{pid}\n" for pid in ids), encoding="utf-8")
        counts[name] = len(ids)
    return counts
