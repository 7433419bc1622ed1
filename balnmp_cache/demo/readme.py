"""The ``README.txt`` written into a demo cohort."""

from __future__ import annotations

from typing import Any

from balnmp_cache.demo import planted

__all__ = ["readme_text"]


def _beta_mean(name: str) -> float:
    a, b = planted.HIGH_GRADE_BETA[name]
    return a / (a + b)


def readme_text(arguments: dict[str, Any], class_counts: dict[str, int], split_counts: dict[str, int],
                n_patches: int) -> str:
    """README of a demo cohort written with ``arguments`` (patients, seed, pyramidal)."""
    beta = planted.HIGH_GRADE_BETA
    lo, hi = planted.FIELD_RADIUS_PX
    size = planted.TUMOUR_SIZE_CM
    er = planted.ER_NEGATIVE_RATE
    classes = ", ".join(f"{name}: {count}" for name, count in class_counts.items())
    splits = ", ".join(f"{name}: {count}" for name, count in split_counts.items())
    return f"""\
SYNTHETIC DEMO COHORT - NOT PATIENT DATA
========================================

Written by balnmp_cache.demo (patients={arguments['patients']}, seed={arguments['seed']},
pyramidal={arguments['pyramidal']}). Every image, polygon and table value is computer-generated. The layout
copies the BCNB release (https://bupt-ai-cz.github.io/BCNB/) so that tools written for BCNB run unchanged;
the pictures are H&E-like drawings, not histology, and no result on them says anything about real patients.
The generated files may be used and shared freely.

Contents
--------
WSIs/<id>.jpg                single-resolution RGB JPEG slides (quality 90, no MPP metadata, like BCNB)
WSIs/<id>.json               tumour polygons, BCNB format, integer level-0 vertices; some polygons run past
                             the image border on purpose (as in real BCNB annotations)
WSIs-pyramidal/<id>.tiff     the same slides as pyramidal JPEG-tiled TIFF (levels 1, 4, 16.. as separate
                             pages, 256-px tiles, {planted.MPP} um/px in the TIFF resolution tags), with
                             the same <id>.json beside them (only when pyramidal=True)
patient-clinical-data.xlsx   BCNB's 14 raw clinical columns
dataset-splitting/           train/val/test patient ids (~60/20/20, stratified by ALN status)
demo-cohort.json             generator arguments and per-patient facts (not part of BCNB)

Patients per ALN status: {classes}. Split: {splits}.
Official 256-px tumour patches (BALNMP tiling rule): {n_patches}.

The planted signal
------------------
Histology (the signal a slide model should find). Tumour areas hold nests of tumour cells with round
nuclei about 15-20 px across in lilac cytoplasm. Some tumour areas are "high-grade fields": discs of
{lo}-{hi} px radius whose cells have larger (20-27 px), darker, irregular nuclei with nucleoli, packed
more densely. The share of a slide's tumour area covered by high-grade fields is drawn per patient from
    N0       Beta{beta['N0']}   (mean {_beta_mean('N0'):.2f})
    N+(1-2)  Beta{beta['N+(1-2)']}   (mean {_beta_mean('N+(1-2)'):.2f})
    N+(>2)   Beta{beta['N+(>2)']}   (mean {_beta_mean('N+(>2)'):.2f})
except that {planted.OCCULT_RATE:.0%} of N(+) patients are "occult" and drawn from the N0 distribution.
So the signal sits in a fraction of the tumour patches only (multiple-instance learning), a few N0 slides
have some high-grade tissue, and N0 vs N(+) cannot be separated perfectly. N+(1-2) vs N+(>2) differ
less. Outside the tumour polygons the tissue is fibrous stroma with fat and lymphocytes, identical in
all classes.

Clinical (weaker). Tumour Size(cm) ~ Normal(mean, sd) = {size['N0']} in N0 and {size['N+']} in N(+);
ER is Negative with probability {er['N0']} in N0 and {er['N+']} in N(+); PR follows ER; Age, HER2 and
the other columns do not depend on the ALN status. "Number of lymph node metastases" is consistent with
"ALN status" (0 -> N0, 1-2 -> N+(1-2), >= 3 -> N+(>2)).

Per-patient facts (drawn high-grade share, realised high-grade area and patch shares, occult flag,
official patch count, split) are in demo-cohort.json. See docs/demo-cohort.md in balnmp_cache.
"""
