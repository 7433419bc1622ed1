"""Clinical-data encoding, exactly as the official preprocessed spreadsheets (balnmp.md §1.4).

Age and tumour size are z-scored with the **training split's** mean and population standard
deviation (ddof = 0); ER, PR and HER2 become 0/1 "is negative" flags; the order is age, size, ER,
PR, HER2. Further columns may be added on request: numeric ones standardised the same way,
categorical ones one-hot encoded over the categories seen in training (the paper's wording).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from balnmp_cache.cohort.table import COLUMN_NAMES, column_label, format_rows
from balnmp_cache.errors import CohortError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OFFICIAL_CLINICAL", "ClinicalEncoder", "fit_clinical"]

log = logging.getLogger(__name__)

OFFICIAL_CLINICAL: tuple[str, ...] = ("age", "tumour_size_cm", "er", "pr", "her2")
_NEGATIVE_FLAGS = {"er": "is_er_negative", "pr": "is_pr_negative", "her2": "is_her2_negative"}


@dataclass(frozen=True)
class ClinicalEncoder:
    """A fitted encoding; :meth:`transform` maps patients to a (P, K) float32 matrix.

    Attributes:
        columns: source columns, in output order.
        names: output feature names (K of them).
        means, stds: standardisation parameters of numeric columns (training split, ddof = 0).
        categories: one-hot categories of categorical extra columns.
    """

    columns: tuple[str, ...]
    names: tuple[str, ...]
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return len(self.names)

    def transform(self, table: pd.DataFrame, patient_ids: Sequence[str]) -> np.ndarray:
        """Encode ``patient_ids`` of ``table`` -> (P, K) float32."""
        rows = table.loc[list(patient_ids)]
        blocks: list[np.ndarray] = []
        for col in self.columns:
            if col in _NEGATIVE_FLAGS:
                blocks.append((rows[col] == "Negative").to_numpy(dtype=np.float32)[:, None])
            elif col in self.means:
                values = rows[col].astype(float).to_numpy()
                blocks.append(((values - self.means[col]) / self.stds[col]).astype(np.float32)[:, None])
            else:
                cats = self.categories[col]
                values = rows[col].astype(str).to_numpy()
                blocks.append(np.stack([(values == c) for c in cats], axis=1).astype(np.float32))
        if not blocks:
            return np.zeros((len(rows), 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1)

    def to_json(self) -> dict:
        return {
            "columns": list(self.columns),
            "names": list(self.names),
            "means": self.means,
            "stds": self.stds,
            "categories": {k: list(v) for k, v in self.categories.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> ClinicalEncoder:
        return cls(
            columns=tuple(data["columns"]),
            names=tuple(data["names"]),
            means={k: float(v) for k, v in data["means"].items()},
            stds={k: float(v) for k, v in data["stds"].items()},
            categories={k: tuple(v) for k, v in data["categories"].items()},
        )


def _check_complete(table: pd.DataFrame, columns: Sequence[str], used: pd.DataFrame) -> None:
    """Every needed column present and no blank value among the patients that will be encoded."""
    source = table.attrs.get("source", "the cohort")
    missing = [c for c in columns if c not in table]
    if missing:
        listed = ", ".join(column_label(table, c) + (f" (or {c})" if COLUMN_NAMES.get(c, c) != c else "")
                           for c in missing)
        raise CohortError(
            f"{source} has no column {listed}, needed for clinical data; add it, or train without clinical data "
            "(--no-clinical)"
        )
    problems = [
        f"row {used.loc[pid, 'source_row']} (patient {pid}): {col} is blank"
        for col in columns
        for pid in used.index[used[col].isna()]
    ]
    if problems:
        raise CohortError(f"clinical data incomplete in {source}: {len(problems)} problem(s) (fill them in, or train "
                          f"without clinical data, --no-clinical):\n{format_rows(problems)}")


def fit_clinical(
    table: pd.DataFrame,
    train_ids: Iterable[str],
    *,
    extra_columns: Sequence[str] = (),
    patient_ids: Iterable[str] | None = None,
) -> ClinicalEncoder:
    """Fit the official encoding (plus ``extra_columns``) on the training patients.

    Args:
        table: a cohort table (see :mod:`balnmp_cache.cohort.table`).
        train_ids: the training split's patient ids; statistics are fitted on them only.
        extra_columns: further columns, numeric (standardised) or categorical (one-hot).
        patient_ids: every patient that will be encoded; a blank value in any of them is an error.

    Raises:
        CohortError: a needed column is missing, or some rows have blank values (all listed).
    """
    import pandas as pd

    columns = tuple(OFFICIAL_CLINICAL) + tuple(c for c in extra_columns if c not in OFFICIAL_CLINICAL)
    _check_complete(table, columns, table.loc[list(patient_ids)] if patient_ids is not None else table)
    train = table.loc[list(train_ids)]
    names: list[str] = []
    means: dict[str, float] = {}
    stds: dict[str, float] = {}
    categories: dict[str, tuple[str, ...]] = {}
    for col in columns:
        if col in _NEGATIVE_FLAGS:
            names.append(_NEGATIVE_FLAGS[col])
            continue
        numeric = pd.to_numeric(train[col], errors="coerce")
        if col in OFFICIAL_CLINICAL or numeric.notna().all():
            mean, std = float(numeric.mean()), float(numeric.std(ddof=0))
            if not np.isfinite(std) or std == 0.0:
                log.warning("clinical column %s is constant in the training split; it is centred but not scaled", col)
                std = 1.0
            means[col], stds[col] = mean, std
            names.append(col if col in OFFICIAL_CLINICAL else f"{col} (z)")
        else:
            cats = tuple(sorted(train[col].astype(str).unique()))
            categories[col] = cats
            names.extend(f"{col}={c}" for c in cats)
    return ClinicalEncoder(columns=columns, names=tuple(names), means=means, stds=stds, categories=categories)
