"""Reading a cohort: the BCNB download (spreadsheet + split files) or a CSV, validated at the door.

The result is a :class:`Cohort` whose ``table`` is indexed by ``patient_id`` (str) with the
normalised columns ``aln_status``, ``age``, ``tumour_size_cm``, ``er``, ``pr``, ``her2``,
``split`` (any that the source has), ``source_row`` (the row number a user sees in the file:
header = row 1) and every other column as read.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from balnmp_cache.cohort.reading import read_table, refuse_other_delimiter
from balnmp_cache.cohort.tasks import ALN_STATUSES, TaskSpec, normalise_aln_status
from balnmp_cache.errors import CohortError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["BCNB_COLUMNS", "COLUMN_NAMES", "SPLITS", "Cohort", "column_label", "format_rows", "load_cohort"]

log = logging.getLogger(__name__)

BCNB_COLUMNS: tuple[str, ...] = (
    "Patient ID",
    "Age(years)",
    "Tumour Size(cm)",
    "Tumour Type",
    "ER",
    "PR",
    "HER2",
    "HER2 Expression",
    "Histological grading",
    "Surgical",
    "Ki67",
    "Molecular subtype",
    "Number of lymph node metastases",
    "ALN status",
)
SPLITS: tuple[str, ...] = ("train", "val", "test")

# Source column spellings (lower-cased, spaces removed) -> normalised name.
_ALIASES: dict[str, str] = {
    "patientid": "patient_id",
    "patient_id": "patient_id",
    "p_id": "patient_id",
    "id": "patient_id",
    "alnstatus": "aln_status",
    "aln_status": "aln_status",
    "age(years)": "age",
    "age": "age",
    "tumoursize(cm)": "tumour_size_cm",
    "tumorsize(cm)": "tumour_size_cm",
    "tumour_size_cm": "tumour_size_cm",
    "tumour_size": "tumour_size_cm",
    "tumor_size": "tumour_size_cm",
    "er": "er",
    "pr": "pr",
    "her2": "her2",
    "split": "split",
    "label": "label",
}
_RECEPTOR_VALUES = {
    "positive": "Positive",
    "pos": "Positive",
    "+": "Positive",
    "1": "Positive",
    "negative": "Negative",
    "neg": "Negative",
    "-": "Negative",
    "0": "Negative",
}
RECEPTORS: tuple[str, ...] = ("er", "pr", "her2")
NUMERIC: tuple[str, ...] = ("age", "tumour_size_cm")
COLUMN_NAMES: dict[str, str] = {
    "patient_id": "Patient ID", "aln_status": "ALN status", "age": "Age(years)", "tumour_size_cm": "Tumour Size(cm)",
    "er": "ER", "pr": "PR", "her2": "HER2", "split": "split", "label": "label",
}
"""Normalised column -> the name a BCNB-like table gives it (for messages)."""
# Plausible values: age in years, tumour size in cm (a size above 30 is most likely in mm)
_RANGES: dict[str, tuple[float, float, str]] = {"age": (0.0, 120.0, "0 to 120 years"),
                                                "tumour_size_cm": (0.0, 30.0, "more than 0 and at most 30 cm")}


@dataclass
class Cohort:
    """A validated patient table.

    Attributes:
        table: one row per patient, indexed by ``patient_id`` (str); see the module docstring.
        source: the file the table came from.
        root: the BCNB root (holding ``dataset-splitting/``) or the CSV's folder.
    """

    table: pd.DataFrame
    source: Path
    root: Path

    @property
    def patient_ids(self) -> list[str]:
        return list(self.table.index)

    def labels(self, task: TaskSpec) -> pd.Series:
        """Integer class labels of the patients taking part in ``task`` (others are dropped)."""
        if "aln_status" in self.table:
            mapped = self.table["aln_status"].map(task.status_to_label)
            return mapped.dropna().astype(int)
        if "label" in self.table:
            return self._integer_labels(task)
        raise CohortError(f"{self.source} has neither an 'ALN status' nor a 'label' column; add one of them")

    def _integer_labels(self, task: TaskSpec) -> pd.Series:
        """Task labels from an integer ``label`` column, where its meaning is unambiguous.

        0/1/2 (a 2 is present) is read as the three-class coding N0, N+(1-2), N+(>2) and mapped to the
        task; 0/1 alone is a binary label, which only task 0 (and task 2, as its first two classes) can
        use: tasks 1, 3 and 4 need the N+ patients told apart and are refused.
        """
        labels = self.table["label"].astype(int)
        found = sorted(int(v) for v in labels.unique())
        if any(v not in (0, 1, 2) for v in found):
            raise CohortError(
                f"{self.source}: column 'label' has values {found}; an integer label is 0/1 (N0 / N(+), task 0) or "
                "0/1/2 (N0 / N+(1-2) / N+(>2)); fix the column or give an 'ALN status' column instead"
            )
        if 2 in found:
            status = labels.map(dict(enumerate(ALN_STATUSES)))
            return status.map(task.status_to_label).dropna().astype(int)
        if task.task in (0, 2):
            return labels
        raise CohortError(
            f"{self.source}: column 'label' holds only 0 and 1, which cannot tell N+(1-2) from N+(>2) patients, "
            f"but task {task.task} ({task.name}) needs them apart; add an 'ALN status' column (N0, N+(1-2), "
            "N+(>2)), or code 'label' as 0 = N0, 1 = N+(1-2), 2 = N+(>2)"
        )

    def row_of(self, patient_id: str) -> int:
        return int(self.table.loc[patient_id, "source_row"])


def format_rows(rows: list[str], limit: int = 20) -> str:
    """Indent problem lines for an error message, eliding after ``limit`` lines."""
    shown = [f"  {r}" for r in rows[:limit]]
    if len(rows) > limit:
        shown.append(f"  ... and {len(rows) - limit} more")
    return "\n".join(shown)


def column_label(table: pd.DataFrame, column: str) -> str:
    """A column as the cohort file names it, else as a BCNB-like table would (``'Tumour Size(cm)'``)."""
    written = table.attrs.get("columns", {}).get(column)
    return repr(written if written is not None else COLUMN_NAMES.get(column, column))


def _normalise_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Rename the known columns to their normalised names; ``attrs["columns"]`` keeps the file's names."""
    renames: dict[object, str] = {}
    for col in df.columns:
        key = str(col).strip().replace(" ", "").lower()
        target = _ALIASES.get(key)
        if target is not None and target not in renames.values():
            renames[col] = target
    df = df.rename(columns=renames)
    df.attrs["columns"] = {target: str(col).strip() for col, target in renames.items()}
    return df


def _is_blank(value: object) -> bool:
    import pandas as pd

    return (
        value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
        or str(value).strip() == ""
    )


def _patient_id(value: object) -> str:
    """A patient id as text: blank -> ``""``, ``12.0`` (as a spreadsheet stores 12) -> ``"12"``."""
    if _is_blank(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _receptor_value(value: object) -> str | None:
    """``Positive``/``Negative`` from the spellings of a receptor column, ``None`` for blank or unknown."""
    if _is_blank(value):
        return None
    return _RECEPTOR_VALUES.get(str(value).strip().lower().removesuffix(".0"))


def _validate(df: pd.DataFrame, source: Path, *, require_outcome: bool = True) -> pd.DataFrame:
    """Normalise values in place and collect every problem into one CohortError."""
    import pandas as pd

    problems: list[str] = []
    if "patient_id" not in df:
        refuse_other_delimiter(df, source)
        raise CohortError(f"{source} has no patient id column; name it 'Patient ID' or 'patient_id'")
    ids = df["patient_id"].map(_patient_id)
    for row, pid in zip(df["source_row"], ids, strict=True):
        if pid == "":
            problems.append(f"row {row}: blank patient id")
    dup = ids[(ids != "") & ids.duplicated(keep=False)]
    for pid in sorted(set(dup)):
        rows = ", ".join(str(r) for r in df.loc[ids == pid, "source_row"])
        problems.append(f"rows {rows}: duplicate patient id {pid!r}")
    df["patient_id"] = ids

    if "aln_status" in df:
        normalised = df["aln_status"].map(normalise_aln_status)
        for row, pid, raw, val in zip(df["source_row"], ids, df["aln_status"], normalised, strict=True):
            if _is_blank(val):
                problems.append(
                    f"row {row} (patient {pid}): unknown ALN status {raw!r}; expected one of {', '.join(ALN_STATUSES)}"
                )
        df["aln_status"] = normalised
    elif "label" in df:
        labels = pd.to_numeric(df["label"], errors="coerce")
        for row, pid, raw, val in zip(df["source_row"], ids, df["label"], labels, strict=True):
            if pd.isna(val) or float(val) != int(val):
                problems.append(f"row {row} (patient {pid}): label {raw!r} is not an integer class index")
        df["label"] = labels
    elif require_outcome:
        problems.append("no 'ALN status' (or 'aln_status') and no 'label' column: the cohort has no outcome")

    for col in NUMERIC:
        if col in df:
            df[col] = _numbers(df, col, ids, problems)
    for col in RECEPTORS:
        if col not in df:
            continue
        mapped = df[col].map(_receptor_value)
        for row, pid, raw, val in zip(df["source_row"], ids, df[col], mapped, strict=True):
            if _is_blank(val) and not _is_blank(raw):  # a blank is refused only where clinical data is used
                problems.append(f"row {row} (patient {pid}): {col.upper()} value {raw!r} is not Positive/Negative")
        df[col] = mapped
    if "split" in df:
        splits = df["split"].map(lambda v: None if _is_blank(v) else str(v).strip().lower())
        for row, pid, val in zip(df["source_row"], ids, splits, strict=True):
            if not _is_blank(val) and val not in SPLITS:
                problems.append(f"row {row} (patient {pid}): split {val!r} is not one of {', '.join(SPLITS)}")
        df["split"] = splits
    if problems:
        raise CohortError(f"{source}: {len(problems)} problem(s) in the cohort table:\n{format_rows(problems)}")
    return df.set_index("patient_id", drop=True)


def _numbers(df: pd.DataFrame, col: str, ids: pd.Series, problems: list[str]) -> pd.Series:
    """Column ``col`` as floats; text and implausible values are added to ``problems``, blanks stay NaN."""
    import pandas as pd

    values = pd.to_numeric(df[col], errors="coerce")
    low, high, allowed = _RANGES[col]
    for row, pid, raw, val in zip(df["source_row"], ids, df[col], values, strict=True):
        if pd.isna(val):
            if not _is_blank(raw):  # a blank is refused only where clinical data is used
                problems.append(f"row {row} (patient {pid}): {col} is non-numeric {raw!r}")
        elif not (low <= val <= high) or (col == "tumour_size_cm" and val <= low):
            problems.append(f"row {row} (patient {pid}): {col} {val:g} is implausible; expected {allowed}")
    return values.astype(float)


def _read_splits(root: Path) -> dict[str, str]:
    """patient id -> split from ``dataset-splitting/{train,val,test}_id.txt``; a patient in two splits is an error."""
    folder = root / "dataset-splitting"
    assignment: dict[str, str] = {}
    clashes: list[str] = []
    for split in SPLITS:
        path = folder / f"{split}_id.txt"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").split():
            pid = line.strip()
            if pid in assignment and assignment[pid] != split:
                clashes.append(f"patient {pid} is in both {assignment[pid]}_id.txt and {split}_id.txt")
            assignment[pid] = split
    if clashes:
        raise CohortError(f"{folder}: a patient may be in one split only:\n{format_rows(clashes)}")
    return assignment


def load_cohort(path: Path, *, require_outcome: bool = True) -> Cohort:
    """Load a BCNB root (``patient-clinical-data.xlsx`` + ``dataset-splitting/``) or a cohort CSV.

    A CSV needs a patient id column and an outcome (``ALN status`` or an integer ``label``); clinical
    columns (``age``, ``tumour_size_cm``, ``er``, ``pr``, ``her2``, or BCNB's spellings) and ``split`` are
    optional. Problems anywhere in the table are reported together, one line per row.
    ``require_outcome=False`` accepts a table without outcome (new patients to predict).

    Raises:
        CohortError: the file is missing or the table is invalid.
    """

    path = Path(path)
    if path.is_dir():
        xlsx = path / "patient-clinical-data.xlsx"
        candidates = [xlsx, *sorted(path.glob("*.csv"))]
        source = next((p for p in candidates if p.is_file()), None)
        if source is None:
            raise CohortError(
                f"{path} is not a BCNB root: patient-clinical-data.xlsx is missing (and there is no cohort CSV); "
                "pass --cohort with the BCNB download folder or a CSV"
            )
        root = path
    elif path.is_file():
        source, root = path, path.parent
    else:
        raise CohortError(f"cohort {path} does not exist; pass --cohort with a BCNB root or a CSV file")

    df = read_table(source)
    df.insert(0, "source_row", range(2, len(df) + 2))
    df = _normalise_columns(df)
    table = _validate(df, source, require_outcome=require_outcome)
    table.attrs.update(columns=df.attrs["columns"], source=str(source))

    splits = _read_splits(root) if source.suffix.lower() in {".xlsx", ".xls"} else {}
    if splits:
        unknown = sorted(set(splits) - set(table.index), key=_natural)
        if unknown:
            raise CohortError(
                f"{root / 'dataset-splitting'} lists patients missing from {source.name}: {', '.join(unknown[:20])}"
            )
        table["split"] = [splits.get(pid) for pid in table.index]
    log.info("cohort %s: %d patients", source, len(table))
    return Cohort(table=table, source=source, root=root)


def _natural(pid: str) -> tuple[int, str]:
    return (int(pid), "") if pid.isdigit() else (1 << 62, pid)
