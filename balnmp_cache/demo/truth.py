"""The demo generator's ground truth per patch: which share of a patch it painted high-grade.

Everything is re-derived from the files the generator wrote (``demo-cohort.json`` records every high-grade
field, ``WSIs/<id>.json`` the tumour polygons), with the same masks :func:`render_slide` paints, so a
heatmap can be checked against where the planted signal really is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from balnmp_cache.demo.cohort import MARKER
from balnmp_cache.demo.layout import rasterise
from balnmp_cache.demo.render import high_grade_mask
from balnmp_cache.errors import ConfigError

__all__ = ["high_grade_fractions"]


def high_grade_fractions(root: Path, patient_id: str, level0_xy: np.ndarray, patch_level0_px: int) -> np.ndarray:
    """(N,) share of each patch's level-0 square that the generator painted high-grade.

    Pixels of a square that lie past the image count as not high-grade (the tiler pads them white).

    Args:
        root: the demo cohort folder (holds ``demo-cohort.json`` and ``WSIs/``).
        patient_id: the patient (= slide id) whose patches these are.
        level0_xy: (N, 2) top-left level-0 x, y of each patch.
        patch_level0_px: the side of a patch in level-0 pixels.

    Raises:
        ConfigError: ``root`` is not a complete demo cohort, or has no such patient.
    """
    root = Path(root)
    try:
        marker = json.loads((root / MARKER).read_text(encoding="utf-8"))
        facts = marker["patients"][str(patient_id)]
        regions = json.loads((root / "WSIs" / f"{patient_id}.json").read_text(encoding="utf-8"))["positive"]
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{root} is not a complete demo cohort with patient {patient_id} ({err}); "
                          "pass the folder `balnmp-cache demo-data` wrote") from err
    shape = (int(facts["height"]), int(facts["width"]))
    tumour = rasterise([np.asarray(r["vertices"], dtype=np.int64) for r in regions], shape)
    high = high_grade_mask(np.asarray(facts["high_grade_fields"], dtype=np.int64), tumour)
    integral = np.zeros((shape[0] + 1, shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = high.cumsum(axis=0).cumsum(axis=1)
    xy = np.asarray(level0_xy, dtype=np.int64)
    x0, y0 = np.clip(xy[:, 0], 0, shape[1]), np.clip(xy[:, 1], 0, shape[0])
    x1, y1 = np.clip(xy[:, 0] + patch_level0_px, 0, shape[1]), np.clip(xy[:, 1] + patch_level0_px, 0, shape[0])
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return inside / float(patch_level0_px * patch_level0_px)
