"""Patch filters from the table: what each keeps, names, describes and lets the grid skip."""

from __future__ import annotations

import numpy as np
import pytest

from balnmp_cache.errors import ConfigError
from balnmp_cache.extract import ExtractConfig
from balnmp_cache.extract.filters import PATCH_FILTERS, BackgroundFilter, WhiteRatioFilter, patch_filter_for
from balnmp_cache.extract.provenance import PROVENANCE
from balnmp_cache.slides import background_ratio, white_ratio


def patches() -> np.ndarray:
    """(4, 32, 32, 3) uint8: pure white, grey glass, tissue pink, tissue with a white third."""
    out = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    out[0] = 255
    out[1] = (178, 176, 179)
    out[2] = (200, 120, 170)
    out[3] = (200, 120, 170)
    out[3, :, :11] = 255
    return out


@pytest.mark.parametrize("name", sorted(PATCH_FILTERS))
def test_every_filter_is_built_from_the_config_and_names_its_provenance(name: str) -> None:
    patch_filter = patch_filter_for(ExtractConfig(patch_filter=name))
    assert patch_filter.name == name
    provenance = patch_filter.provenance()
    assert provenance["patch_filter"] == name and len(provenance) == 2
    assert all(PROVENANCE[item].key and PROVENANCE[item].attrs for item in provenance)
    keep = patch_filter.keep(patches())
    assert keep.dtype == bool and keep.tolist()[0] is False and keep.tolist()[2] is True
    threshold = next(v for k, v in provenance.items() if k != "patch_filter")
    assert f"{threshold:g}" in patch_filter.describe()


def test_white_ratio_is_the_official_rule_and_lets_the_grid_skip_painted_cells() -> None:
    rule = WhiteRatioFilter(0.3)
    batch = patches()
    np.testing.assert_array_equal(rule.keep(batch), white_ratio(batch) < 0.3)
    assert rule.keep(batch).tolist() == [False, True, True, False]  # grey glass passes the official rule
    assert rule.max_outside == 0.3
    assert rule.describe() == "white ratio < 0.3"
    assert patch_filter_for(ExtractConfig(white_ratio_max=0.5)) == WhiteRatioFilter(0.5)


def test_background_filter_drops_glass_and_reads_every_cell() -> None:
    rule = BackgroundFilter(0.5)
    batch = patches()
    np.testing.assert_array_equal(rule.keep(batch), background_ratio(batch) < 0.5)
    assert rule.keep(batch).tolist() == [False, False, True, True]
    assert rule.max_outside is None
    assert rule.describe() == "background < 0.5"
    assert patch_filter_for(ExtractConfig(patch_filter="background", background_max=0.7)) == BackgroundFilter(0.7)


def test_an_unknown_filter_is_refused_naming_the_choices() -> None:
    config = ExtractConfig.model_construct(patch_filter="otsu")  # what validation would refuse
    with pytest.raises(ConfigError, match="'otsu' is not one of white_ratio, background; change --patch-filter"):
        patch_filter_for(config)
