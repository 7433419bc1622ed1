"""The planted signal, measured cheaply from the JPEG pixels (no CNN), so it cannot silently disappear."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from balnmp_cache.demo import DemoSummary
from balnmp_cache.demo.layout import official_patches, rasterise

_DARK = 100  # grey level below which a pixel belongs to a haematoxylin-dark nucleus


def _patches(root: Path, pid: int, facts: dict[str, Any]) -> list[tuple[float, float]]:
    """(high-grade share, dark-pixel share) of each official patch, over its in-polygon pixels."""
    with Image.open(root / "WSIs" / f"{pid}.jpg") as image:
        grey = np.asarray(image.convert("L"))
    regions = [np.array(r["vertices"]) for r in json.loads((root / "WSIs" / f"{pid}.json").read_text())["positive"]]
    fields = facts["patients"][str(pid)]["high_grade_fields"]
    out = []
    for index, x, y in official_patches(regions, grey.shape[1], grey.shape[0]):
        patch = grey[y : y + 256, x : x + 256]
        inside = rasterise([regions[index]], patch.shape, offset=(x, y))
        yy, xx = np.mgrid[y : y + patch.shape[0], x : x + patch.shape[1]]
        high = np.zeros(patch.shape, dtype=bool)
        for cx, cy, r in fields:
            high |= (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        out.append(((high & inside).sum() / inside.sum(), float((patch[inside] < _DARK).mean())))
    return out


def test_high_grade_patches_are_darker_and_more_common_in_node_positive_slides(
    tiny_cohort: DemoSummary, tiny_facts: dict[str, Any]
) -> None:
    root = Path(tiny_cohort.root)
    per_patient = {pid: np.array(_patches(root, pid, tiny_facts)) for pid in range(1, 9)}
    everything = np.concatenate(list(per_patient.values()))
    high = everything[everything[:, 0] >= 0.5, 1]
    normal = everything[everything[:, 0] == 0, 1]
    assert len(high) >= 10 and len(normal) >= 30
    # Patch level: high-grade fields carry about twice the nuclear darkness (documented effect size d > 3).
    pooled_sd = np.sqrt((high.var() + normal.var()) / 2)
    assert high.mean() - normal.mean() > 0.08
    assert (high.mean() - normal.mean()) / pooled_sd > 3.0
    # Patient level: the share of dark patches, measured from pixels alone, is higher in N(+) slides and
    # follows the recorded share of high-grade patches.
    threshold = (high.mean() + normal.mean()) / 2
    share = {pid: float((p[:, 1] > threshold).mean()) for pid, p in per_patient.items()}
    status = {pid: tiny_facts["patients"][str(pid)]["aln_status"] for pid in per_patient}
    positive = [share[p] for p in share if status[p] != "N0"]
    negative = [share[p] for p in share if status[p] == "N0"]
    assert np.mean(positive) > np.mean(negative) + 0.15
    recorded = [tiny_facts["patients"][str(p)]["high_grade_patch_fraction"] for p in share]
    assert np.corrcoef(list(share.values()), recorded)[0, 1] > 0.9


def test_planted_distributions_match_the_documentation() -> None:
    from balnmp_cache.demo.cohort import _patient_plan
    from balnmp_cache.demo.planted import HIGH_GRADE_BETA, OCCULT_RATE

    for status in ("N0", "N+(1-2)", "N+(>2)"):
        plans = [_patient_plan(0, pid, status) for pid in range(1, 2001)]
        targets = np.array([p[0] for p in plans])
        fractions = np.array([p[1] for p in plans])
        occult = np.array([p[2] for p in plans])
        assert targets.min() >= 10 and targets.max() <= 66 and 20 <= targets.mean() <= 28
        a, b = HIGH_GRADE_BETA[status]
        if status == "N0":
            assert not occult.any()
            assert abs(fractions.mean() - a / (a + b)) < 0.01
        else:
            assert abs(occult.mean() - OCCULT_RATE) < 0.02
            assert abs(fractions[~occult].mean() - a / (a + b)) < 0.015


def test_glass_is_near_white_and_polygons_hold_no_pure_white(tiny_cohort: DemoSummary) -> None:
    """Tissue detection needs near-white glass; the official 255-count filter needs tissue that is never 255."""
    root = Path(tiny_cohort.root)
    for pid in (1, 2):
        with Image.open(root / "WSIs" / f"{pid}.jpg") as image:
            rgb = np.asarray(image.convert("RGB"))
        regions = [np.array(r["vertices"]) for r in json.loads((root / "WSIs" / f"{pid}.json").read_text())["positive"]]
        inside = rasterise(regions, rgb.shape[:2])
        assert (rgb[inside] == 255).mean() < 1e-4
        corner = rgb[:30, -30:].reshape(-1, 3).astype(float)  # glass: the top-right corner is never tissue
        assert corner.mean() > 235 and (corner == 255).mean() < 0.05
        grey = rgb.mean(axis=2)
        assert grey[inside].mean() < 180  # tissue is clearly darker than glass
