"""``high_grade_fractions``: the generator's ground truth per patch, re-derived from the files it wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from balnmp_cache.demo.layout import official_patches
from balnmp_cache.demo.truth import high_grade_fractions
from balnmp_cache.errors import ConfigError
from balnmp_cache.slides import load_regions


def _patches(root: Path, pid: str, facts: dict) -> np.ndarray:
    regions = [r.vertices for r in load_regions(root / "WSIs" / f"{pid}.json")]
    kept = official_patches(regions, facts["width"], facts["height"])
    return np.array([(x, y) for _, x, y in kept], dtype=np.int64)


def test_fractions_give_the_generators_share_of_high_grade_patches(tiny_cohort, tiny_facts):
    root = Path(tiny_cohort.root)
    for pid, facts in tiny_facts["patients"].items():
        coords = _patches(root, pid, facts)
        fractions = high_grade_fractions(root, pid, coords, 256)
        assert fractions.shape == (facts["n_patches"],) and ((fractions >= 0) & (fractions <= 1)).all()
        assert round(float((fractions >= 0.3).mean()), 4) == facts["high_grade_patch_fraction"]


def test_high_grade_patches_are_darker_in_the_slide(tiny_cohort, tiny_facts):
    """The planted fields are where the pixels say they are: high-grade patches have more dark nuclei."""
    root = Path(tiny_cohort.root)
    dark = {True: [], False: []}
    for pid, facts in tiny_facts["patients"].items():
        rgb = np.asarray(Image.open(root / "WSIs" / f"{pid}.jpg").convert("L"))
        coords = _patches(root, pid, facts)
        for (x, y), fraction in zip(coords.tolist(), high_grade_fractions(root, pid, coords, 256), strict=True):
            if fraction >= 0.5 or fraction == 0:
                dark[fraction >= 0.5].append(float((rgb[y : y + 256, x : x + 256] < 100).mean()))
    assert dark[True] and dark[False]
    assert np.mean(dark[True]) > np.mean(dark[False]) + 0.05


def test_a_folder_that_is_not_a_demo_cohort_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not a complete demo cohort"):
        high_grade_fractions(tmp_path, "1", np.zeros((1, 2), dtype=np.int64), 256)
