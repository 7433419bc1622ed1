"""Paired DeLong tests between runs evaluated on the same patients (``comparisons.json``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from balnmp_cache.report.delong import paired_delong_test
from balnmp_cache.report.multiplicity import benjamini_hochberg, holm
from balnmp_cache.report.predictions import SPLITS, RunPredictions, check_same_patients, comparable

__all__ = ["COMPARISON_KEYS", "compare_runs", "group_runs"]

log = logging.getLogger(__name__)

COMPARISON_KEYS = ("run_a", "run_b", "split", "n", "auc_a", "auc_b", "z", "p_value", "p_holm", "p_bh", "notes")
"""Keys of a ``comparisons.json`` record (``n``, the adjusted p-values and ``notes`` are additions to the issue's list).

``p_holm`` and ``p_bh`` adjust ``p_value`` (Holm; Benjamini–Hochberg) within the family of all the tests of
one split."""


def group_runs(runs: Sequence[RunPredictions]) -> list[list[RunPredictions]]:
    """Runs grouped by :func:`~balnmp_cache.report.predictions.comparable` (same task), in input order."""
    groups: list[list[RunPredictions]] = []
    for run in runs:
        for group in groups:
            if comparable(group[0], run):
                group.append(run)
                break
        else:
            groups.append([run])
    return groups


def compare_runs(runs: Sequence[RunPredictions], *, designs: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Paired DeLong test for every pair of comparable binary runs and every split they share.

    Pairs of the same task must hold the same patients and labels in each shared split; runs of
    different tasks are not compared. Multi-class runs are checked for the same patients but not
    tested (DeLong's test is for binary ROC curves). The p-values are adjusted per split (Holm, BH).

    ``designs`` (run -> how its patients were split, e.g. k-fold's fold and split seed) exempts runs
    split differently by design: two runs whose designs are both known and differ are not compared.

    Raises:
        ReportInputError: two runs of the same task hold different patients or labels in a split.
    """
    designs = designs or {}
    records = []
    for i, a in enumerate(runs):
        for b in runs[i + 1 :]:
            if not comparable(a, b):
                log.info("runs %s and %s are different tasks: not compared", a.name, b.name)
                continue
            design_a, design_b = designs.get(a.name), designs.get(b.name)
            if design_a is not None and design_b is not None and design_a != design_b:
                log.info("runs %s and %s split the patients differently (%s, %s): not compared", a.name, b.name,
                         design_a, design_b)
                continue
            for split in SPLITS:
                if split not in a.splits or split not in b.splits:
                    continue
                check_same_patients(a, b, split)
                if not a.is_binary:
                    continue
                test = paired_delong_test(a.scores(split), b.scores(split), a.labels(split))
                record = {"run_a": a.name, "run_b": b.name, "split": split, "n": len(a.labels(split))}
                record.update(auc_a=test.auc_a, auc_b=test.auc_b, z=test.z, p_value=test.p_value)
                record["notes"] = [test.note] if test.note else []
                records.append(record)
    _adjust(records)
    return [{key: r[key] for key in COMPARISON_KEYS} for r in records]


def _adjust(records: list[dict[str, Any]]) -> None:
    """Add ``p_holm`` and ``p_bh`` to each record, the family being the tests of its split."""
    for split in SPLITS:
        family = [r for r in records if r["split"] == split]
        raw = [r["p_value"] for r in family]
        for record, p_holm, p_bh in zip(family, holm(raw), benjamini_hochberg(raw), strict=True):
            record.update(p_holm=p_holm, p_bh=p_bh)
