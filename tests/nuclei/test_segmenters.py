"""The segmenter registry: names, the classical default, one-line errors for absent packages or weights."""

from __future__ import annotations

import pytest

from balnmp_cache.errors import NucleiError
from balnmp_cache.nuclei.config import NucleiConfig
from balnmp_cache.nuclei.segmenters import create_segmenter, list_segmenters, register_segmenter


def test_registry_lists_the_four_and_builds_the_classical_one():
    assert {"classical", "stardist", "cellpose", "hovernet"} <= set(list_segmenters())
    segmenter = create_segmenter(NucleiConfig(otsu_scale=1.5))
    assert segmenter.identifier == "classical-v1"
    assert segmenter.settings()["otsu_scale"] == 1.5


@pytest.mark.parametrize("name", ["stardist", "cellpose", "hovernet"])
def test_learned_segmenters_without_package_or_weights_fail_in_one_line(name, tmp_path):
    with pytest.raises(NucleiError) as info:
        create_segmenter(NucleiConfig(segmenter=name, weights=tmp_path / "missing.pth"))
    message = str(info.value)
    assert "\n" not in message and name in message
    assert "--segmenter classical" in message or "nothing is downloaded" in message


def test_unknown_segmenter_lists_the_valid_ones():
    with pytest.raises(NucleiError, match="classical"):
        create_segmenter(NucleiConfig(segmenter="nope"))


def test_a_registered_segmenter_is_built_by_name():
    class Toy:
        name = identifier = "toy"

        def settings(self):
            return {}

        def segment(self, patches, *, px_um):
            return patches[..., 0] * 0

    register_segmenter("toy")(lambda config: Toy())
    try:
        assert create_segmenter(NucleiConfig(segmenter="toy")).identifier == "toy"
    finally:
        from balnmp_cache.nuclei.segmenters import SEGMENTERS

        SEGMENTERS.pop("toy")
