"""The planted signal of the demo cohort, in one place so the documentation can quote it.

Every N(+) slide differs from N0 slides in one morphological way: a share of its tumour area is covered by
*high-grade fields* (round fields of 50-110 µm radius) whose tumour cells have larger, darker, pleomorphic,
more crowded nuclei with nucleoli. The share is drawn per patient from a Beta distribution that depends on
the ALN status, so the signal sits in a fraction of the tumour patches only (multiple-instance style), and a
few N0 slides have some high-grade tissue too. A share of N(+) patients is *occult*: their slides are drawn
from the N0 distribution, which caps the attainable AUC.

The clinical columns carry a weaker signal: larger tumours and ER-negative tumours are slightly more common
in N(+) patients (and PR follows ER). Age, HER2 and the other columns do not depend on the label, except
``Histological grading`` (grade 3 slightly more common in N(+)), which BALNMP's clinical inputs do not use.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALN_CLASSES",
    "CLASS_SHARES",
    "ER_NEGATIVE_RATE",
    "FIELD_RADIUS_PX",
    "HIGH_GRADE_BETA",
    "MPP",
    "OCCULT_RATE",
    "PATCH_PX",
    "TUMOUR_SIZE_CM",
]

ALN_CLASSES: Final = ("N0", "N+(1-2)", "N+(>2)")
"""ALN status values, as in BCNB's ``ALN status`` column."""

CLASS_SHARES: Final = {"N0": 0.62, "N+(1-2)": 0.20, "N+(>2)": 0.18}
"""Share of patients per ALN status (BCNB: 655 / 210 / 193 of 1058)."""

HIGH_GRADE_BETA: Final = {"N0": (0.5, 9.0), "N+(1-2)": (2.0, 4.5), "N+(>2)": (3.0, 4.0)}
"""Beta(a, b) of the share of tumour area covered by high-grade fields; means 0.053 / 0.31 / 0.43."""

OCCULT_RATE: Final = 0.10
"""Probability that an N(+) patient's slide is drawn from the N0 high-grade distribution."""

FIELD_RADIUS_PX: Final = (100, 220)
"""Radius range of one high-grade field in level-0 pixels (50-110 µm at 0.5 µm/px)."""

TUMOUR_SIZE_CM: Final = {"N0": (2.05, 0.80), "N+": (2.50, 0.85)}
"""Mean and standard deviation of ``Tumour Size(cm)`` (clipped to 0.5-7.0 cm, rounded to 0.1 cm)."""

ER_NEGATIVE_RATE: Final = {"N0": 0.18, "N+": 0.27}
"""Probability that ``ER`` is ``Negative``."""

MPP: Final = 0.5
"""Microns per pixel of level 0 ("20x"), written into the pyramidal TIFFs; the JPEGs carry no MPP, like BCNB."""

PATCH_PX: Final = 256
"""Patch size of the official tiling rule used to size the tumour polygons."""
