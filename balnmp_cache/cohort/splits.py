"""Train/val/test assignment: BCNB split files, the official per-task JSON files, or k-fold.

* ``bcnb`` — ``dataset-splitting/{train,val,test}_id.txt`` of the download (the type-0 split).
* ``official`` — ``{train,val,test}-type-{task}.json`` of the official code (balnmp.md §1.5); these
  also fix each patient's bags, which :func:`load_official_bags` returns for replay.
* ``kfold`` — patient-stratified k folds, written to a splits file on first use and reused after,
  so every run of an ablation sees the same patients. Fold ``f`` is the test set, fold ``f + 1``
  (mod k) the validation set, the rest the training set.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from balnmp_cache.cohort.table import SPLITS, format_rows
from balnmp_cache.errors import CohortError
from balnmp_cache.fsio import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OfficialBags", "SplitScheme", "kfold_splits", "load_official_bags", "resolve_splits"]

log = logging.getLogger(__name__)

SplitScheme = Literal["bcnb", "official", "kfold"]


@dataclass(frozen=True)
class OfficialBags:
    """The contents of the official ``*-type-{task}.json`` files.

    Attributes:
        split: patient id -> split.
        labels: patient id -> class index.
        bags: patient id -> list of bags, each a list of patch keys (``patches/<pid>/<file>.jpg``).
    """

    split: dict[str, str]
    labels: dict[str, int]
    bags: dict[str, list[list[str]]]


def load_official_bags(json_dir: Path, task: int) -> OfficialBags:
    """Read ``{train,val,test}-type-{task}.json`` from ``json_dir`` (the official ``code/dataset/json``)."""
    split: dict[str, str] = {}
    labels: dict[str, int] = {}
    bags: dict[str, list[list[str]]] = {}
    problems: list[str] = []
    for name in SPLITS:
        path = Path(json_dir) / f"{name}-type-{task}.json"
        if not path.is_file():
            raise CohortError(
                f"official split file {path} is missing; "
                f"pass --official-json with the folder holding *-type-{task}.json"
            )
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise CohortError(f"{path} is not valid JSON: {err}") from err
        for i, entry in enumerate(entries):
            try:
                pid, label, paths = str(entry["id"]), int(entry["label"]), [str(p) for p in entry["patch_paths"]]
            except (KeyError, TypeError, ValueError) as err:
                problems.append(f"{path.name} entry {i}: expected keys id, label, patch_paths ({err})")
                continue
            if pid in split and split[pid] != name:
                problems.append(f"patient {pid} is in both {split[pid]}-type-{task}.json and {path.name}")
                continue
            if pid in labels and labels[pid] != label:
                problems.append(f"{path.name} entry {i}: patient {pid} has labels {labels[pid]} and {label}")
            split[pid], labels[pid] = name, label
            bags.setdefault(pid, []).append(paths)
    if problems:
        raise CohortError(f"official bag files in {json_dir} are inconsistent:\n{format_rows(problems)}")
    return OfficialBags(split=split, labels=labels, bags=bags)


def kfold_splits(labels: pd.Series, *, k: int, fold: int, seed: int, splits_file: Path) -> dict[str, str]:
    """Patient-stratified k-fold assignment, persisted in ``splits_file`` (CSV: patient_id, fold).

    An existing file is reused as it is; it must cover exactly the task's patients.
    """
    if not 0 <= fold < k:
        raise CohortError(f"fold {fold} is out of range for k = {k}; use --fold 0..{k - 1}")
    splits_file = Path(splits_file)
    if splits_file.is_file():
        with splits_file.open(newline="", encoding="utf-8") as fh:
            folds = {row["patient_id"]: int(row["fold"]) for row in csv.DictReader(fh)}
        missing = sorted(set(labels.index) - set(folds))
        extra = sorted(set(folds) - set(labels.index))
        if missing or extra:
            raise CohortError(
                f"splits file {splits_file} does not match the cohort: missing patients {missing[:10]}, "
                f"unknown patients {extra[:10]}; delete it to draw new folds"
            )
        if max(folds.values()) + 1 != k:
            raise CohortError(f"splits file {splits_file} has {max(folds.values()) + 1} folds but k = {k}")
        log.info("reusing folds from %s", splits_file)
    else:
        from sklearn.model_selection import StratifiedKFold

        ids = sorted(labels.index)
        y = labels.loc[ids].to_numpy()
        skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        folds = {}
        for f, (_, test_idx) in enumerate(skf.split(ids, y)):
            for i in test_idx:
                folds[ids[i]] = f
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["patient_id", "fold"])
        writer.writerows(sorted(folds.items()))
        atomic_write_text(splits_file, buffer.getvalue())
        log.info("wrote %d-fold splits to %s", k, splits_file)
    val_fold = (fold + 1) % k
    return {pid: "test" if f == fold else "val" if f == val_fold else "train" for pid, f in folds.items()}


def resolve_splits(
    table: pd.DataFrame,
    labels: pd.Series,
    *,
    scheme: SplitScheme,
    official: OfficialBags | None = None,
    k: int = 5,
    fold: int = 0,
    seed: int = 0,
    splits_file: Path | None = None,
) -> dict[str, str]:
    """patient id -> split for the patients of ``labels`` (the task's patients).

    Raises:
        CohortError: a task patient has no split, or a split is empty.
    """
    if scheme == "bcnb":
        if "split" not in table:
            raise CohortError(
                "the cohort has no split information; "
                "use split = 'kfold' or give dataset-splitting/ files or a 'split' column"
            )
        assignment = {pid: table.at[pid, "split"] for pid in labels.index}
    elif scheme == "official":
        if official is None:
            raise CohortError("split = 'official' needs the official JSON folder (--official-json)")
        assignment = {pid: official.split.get(pid) for pid in labels.index if pid in official.split}
    elif scheme == "kfold":
        if splits_file is None:
            raise CohortError("split = 'kfold' needs a splits file path (key 'splits_file')")
        assignment = kfold_splits(labels, k=k, fold=fold, seed=seed, splits_file=splits_file)
    else:
        raise CohortError(f"unknown split scheme {scheme!r}; choose bcnb, official or kfold")
    unassigned = sorted(pid for pid, s in assignment.items() if s not in SPLITS)
    if unassigned:
        raise CohortError(f"{len(unassigned)} patient(s) have no train/val/test split: {', '.join(unassigned[:20])}")
    _check_nonempty(assignment)
    return dict(assignment)


def _check_nonempty(assignment: Mapping[str, str]) -> None:
    present = set(assignment.values())
    for needed in ("train", "val"):
        if needed not in present:
            raise CohortError(f"the {needed} split has no patients of this task; check the split files or use kfold")
