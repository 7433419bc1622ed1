"""Table 1: characteristics of the training and test cohorts.

The training cohort is the paper's: train + val ("T + V", 840 patients in BCNB); the test cohort is
the independent test set (I-T). Continuous variables are shown as mean ± SD (ddof 1) and compared with
the two-sided Mann–Whitney U test; categorical ones as counts (% of the non-missing patients of the
column) and compared with Pearson's chi-square test without continuity correction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.report.subgroups import receptor_status, split_at
from balnmp_cache.sorting import natural_key

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ALN_GROUPS", "TABLE1_KEYS", "cohort_groups", "table1", "table1_by_aln"]

TABLE1_KEYS = ("characteristic", "level", "all", "training", "test", "p_value", "test_name", "note")
GROUPS = ("training", "test")
_ORDER = {
    "aln_status": ["N0", "N+(1-2)", "N+(>2)"],
    "er": ["Positive", "Negative"],
    "pr": ["Positive", "Negative"],
    "her2": ["Positive", "Negative"],
}


def cohort_groups(cohort: pd.DataFrame, fallback: pd.Series | None = None) -> pd.Series:
    """``training`` (train or val), ``test`` or missing per cohort patient.

    Args:
        cohort: the cohort table with a ``split`` column (may be missing or partly empty).
        fallback: split per patient id used where the cohort has none (e.g. from the predictions).
    """
    import pandas as pd

    index = cohort.index.astype(str)
    split = pd.Series(cohort["split"].to_numpy() if "split" in cohort else None, index=index, dtype=object)
    if fallback is not None:
        fallback = fallback[~fallback.index.duplicated()]
        split = split.where(split.notna(), fallback.reindex(index))
    mapping = {"train": "training", "val": "training", "test": "test"}
    return split.map(lambda s: mapping.get(str(s).strip().lower()) if isinstance(s, str) else None)


def _row(
    characteristic: str,
    level: str,
    cells: dict[str, str],
    *,
    p_value: float | None = None,
    test_name: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """One Table 1 row; ``cells`` holds the ``all``, ``training`` and ``test`` columns."""
    row: dict[str, Any] = {"characteristic": characteristic, "level": level, **cells}
    row.update(p_value=p_value, test_name=test_name, note=note)
    return row


def _continuous(
    name: str, values: pd.Series, group: pd.Series, groups: Sequence[str] = GROUPS
) -> list[dict[str, Any]]:
    from scipy.stats import mannwhitneyu

    def summary(v: np.ndarray) -> str:
        if len(v) == 0:
            return "–"
        return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f} (n = 1)"

    parts = {g: values[group == g].dropna().to_numpy(dtype=np.float64) for g in groups}
    note = None
    p_value = None
    first, second = (parts[g] for g in groups)
    if len(first) and len(second):
        p_value = float(mannwhitneyu(first, second, alternative="two-sided").pvalue)
    else:
        note = "no test: a cohort has no values"
    cells = {"all": summary(np.concatenate(list(parts.values()))), **{g: summary(parts[g]) for g in groups}}
    rows = [_row(name, "mean ± SD", cells, p_value=p_value, test_name="Mann-Whitney U", note=note)]
    missing = {g: int(values[group == g].isna().sum()) for g in groups}
    if sum(missing.values()):
        rows.append(_count_row(name, "missing", missing, groups=groups))
    return rows


def _count_row(
    name: str,
    level: str,
    counts: dict[str, int],
    totals: dict[str, int] | None = None,
    *,
    groups: Sequence[str] = GROUPS,
) -> dict[str, Any]:
    def cell(count: int, total: int | None) -> str:
        return f"{count} ({100.0 * count / total:.1f}%)" if total else str(count)

    totals = totals or {}
    cells = {"all": cell(sum(counts.values()), sum(totals.values()) if totals else None)}
    cells.update({g: cell(counts[g], totals.get(g)) for g in groups})
    return _row(name, level, cells)


def _categorical(
    name: str, values: pd.Series, group: pd.Series, order: Sequence[str] | None, groups: Sequence[str] = GROUPS
) -> list[dict[str, Any]]:
    import pandas as pd
    from scipy.stats import chi2_contingency

    known = values.notna() & group.notna()
    table = pd.crosstab(values[known].astype(str), group[known]).reindex(columns=list(groups), fill_value=0)
    order = list(order or [])
    rest = sorted((lv for lv in table.index if lv not in order), key=natural_key)
    levels = [lv for lv in order if lv in table.index] + rest
    table = table.reindex(levels)
    nonzero = table.loc[table.sum(axis=1) > 0, table.sum(axis=0) > 0]
    p_value, note = None, None
    if nonzero.shape[0] >= 2 and nonzero.shape[1] == 2:
        p_value = float(chi2_contingency(nonzero.to_numpy(), correction=False).pvalue)
    else:
        note = "no test: needs two cohorts and at least two observed levels"
    totals = {g: int(table[g].sum()) for g in groups}
    header = _row(name, "", dict.fromkeys(("all", *groups), ""), p_value=p_value, test_name="chi-square", note=note)
    rows = [header] + [
        _count_row(name, lv, {g: int(table.loc[lv, g]) for g in groups}, totals, groups=groups) for lv in levels
    ]
    missing = {g: int((values.isna() & (group == g)).sum()) for g in groups}
    if sum(missing.values()):
        rows.append(_count_row(name, "missing", missing, groups=groups))
    return rows


def table1(
    cohort: pd.DataFrame,
    *,
    groups: pd.Series | None = None,
    t_stage_cutoff_cm: float = 2.0,
    extra_columns: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of Table 1.

    Args:
        cohort: ``load_cohort(...).table`` (``age``, ``tumour_size_cm``, ``er``, ``pr``, ``her2``,
            ``aln_status``, ``split`` and raw columns); absent columns are skipped.
        groups: ``training``/``test``/``None`` per patient (default :func:`cohort_groups` of ``cohort``).
        t_stage_cutoff_cm: T1 is a tumour size ``<=`` this (cm).
        extra_columns: further categorical columns to summarise when present.

    Returns:
        Rows with :data:`TABLE1_KEYS` (cells are formatted strings, ``p_value`` a float or ``None``) and
        warnings.
    """

    warnings: list[str] = []
    group = (groups if groups is not None else cohort_groups(cohort)).reindex(cohort.index.astype(str))
    data = cohort.copy()
    data.index = data.index.astype(str)
    n_none = int(group.isna().sum())
    if n_none:
        warnings.append(f"Table 1: {n_none} patient(s) belong to no split and are left out")
    keep = group.notna()
    data, group = data[keep], group[keep]
    counts = {g: int((group == g).sum()) for g in GROUPS}
    rows = _characteristics(data, group, groups=GROUPS, t_stage_cutoff_cm=t_stage_cutoff_cm,
                            extra_columns=extra_columns)
    if not counts["training"] or not counts["test"]:
        warnings.append("Table 1: the cohort lacks a training or a test group; its tests are undefined")
    return rows, warnings


def _characteristics(
    data: pd.DataFrame,
    group: pd.Series,
    *,
    groups: Sequence[str],
    t_stage_cutoff_cm: float,
    extra_columns: Sequence[str],
    with_aln: bool = True,
) -> list[dict[str, Any]]:
    """The rows of a Table 1 whose two columns are ``groups`` (``group`` holds one of them per patient)."""
    import pandas as pd

    counts = {g: int((group == g).sum()) for g in groups}
    cells = {"all": str(sum(counts.values())), **{g: str(counts[g]) for g in groups}}
    rows: list[dict[str, Any]] = [_row("Patients", "n", cells)]
    if "age" in data:
        rows += _continuous("Age (years)", pd.to_numeric(data["age"], errors="coerce"), group, groups)
    if "tumour_size_cm" in data:
        size = pd.to_numeric(data["tumour_size_cm"], errors="coerce")
        rows += _continuous("Tumour size (cm)", size, group, groups)
        stage = split_at(size, t_stage_cutoff_cm, ("T1", "T2"), index=size.index)
        rows += _categorical(f"T stage (T1 <= {t_stage_cutoff_cm:g} cm)", stage, group, ["T1", "T2"], groups)
    for column, title in (("er", "ER"), ("pr", "PR"), ("her2", "HER2")):
        if column in data:
            rows += _categorical(title, receptor_status(data[column]), group, _ORDER[column], groups)
    if with_aln and "aln_status" in data:
        status = data["aln_status"].astype(object).where(data["aln_status"].notna())
        rows += _categorical("ALN status", status, group, _ORDER["aln_status"], groups)
    for column in extra_columns:
        if column in data:
            values = data[column].astype(object).where(data[column].notna())
            rows += _categorical(column, values, group, None, groups)
    return rows


ALN_GROUPS = ("N0", "N(+)")


def table1_by_aln(
    cohort: pd.DataFrame, *, t_stage_cutoff_cm: float = 2.0, extra_columns: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], list[str]]:
    """Table 1 stratified by ALN status: N0 against N(+) (N+(1-2) and N+(>2)), the same rows and tests.

    Rows have the keys ``characteristic``, ``level``, ``all``, ``N0``, ``N(+)``, ``p_value``,
    ``test_name``, ``note``; patients without an ALN status are left out with a warning.
    """
    if "aln_status" not in cohort:
        return [], ["Table 1 by ALN status: the cohort has no ALN status column"]
    data = cohort.copy()
    data.index = data.index.astype(str)
    status = data["aln_status"].astype(object)
    group = status.map(lambda s: None if not isinstance(s, str) else "N0" if s == "N0" else "N(+)")
    warnings = []
    if group.isna().any():
        left_out = int(group.isna().sum())
        warnings.append(f"Table 1 by ALN status: {left_out} patient(s) without an ALN status are left out")
    keep = group.notna()
    rows = _characteristics(data[keep], group[keep], groups=ALN_GROUPS, t_stage_cutoff_cm=t_stage_cutoff_cm,
                            extra_columns=extra_columns, with_aln=False)
    return rows, warnings
