"""Target-MPP / magnification planning on a synthetic 3-level pyramid (MPP 0.25, downsamples 1, 2, 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from balnmp_cache.errors import ConfigError, SlideError
from balnmp_cache.slides import open_slide, plan_resolution
from tests.slides.conftest import tissue_image, write_pyramid_tiff


@pytest.fixture(scope="module")
def quarter_micron(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pyramid_tiff(tmp_path_factory.mktemp("res") / "q.tif", tissue_image(512, 512), levels=3, mpp=0.25)


@pytest.mark.parametrize(
    ("target", "level", "level0_px", "read_px"),
    [(None, 0, 256, 256), (0.25, 0, 256, 256), (0.5, 1, 512, 256), (1.0, 2, 1024, 256), (0.75, 1, 768, 384),
     (2.0, 2, 2048, 512)],
)
def test_target_mpp_picks_the_level(
    quarter_micron: Path, target: float | None, level: int, level0_px: int, read_px: int
) -> None:
    with open_slide(quarter_micron) as reader:
        plan = plan_resolution(reader, patch_px=256, target_mpp=target)
    assert (plan.read_level, plan.patch_level0_px, plan.read_px) == (level, level0_px, read_px)
    assert plan.mpp_source == "metadata"
    assert plan.mpp == pytest.approx(target if target is not None else 0.25)
    assert plan.downsample == pytest.approx(level0_px / 256)
    assert plan.magnification == pytest.approx(10.0 / plan.mpp)  # no objective power in this file


def test_magnification_uses_ten_microns_convention(quarter_micron: Path) -> None:
    with open_slide(quarter_micron) as reader:
        plan = plan_resolution(reader, patch_px=224, magnification=20)  # 20x = 0.5 um/px
    assert (plan.read_level, plan.patch_level0_px, plan.read_px) == (1, 448, 224)
    assert plan.mpp == pytest.approx(0.5) and plan.magnification == pytest.approx(20.0)


def test_override_and_missing_mpp(tmp_path: Path) -> None:
    path = write_pyramid_tiff(tmp_path / "none.tif", tissue_image(256, 256), levels=2, mpp=None)
    with open_slide(path) as reader:
        native = plan_resolution(reader, patch_px=128)
        assert (native.mpp, native.mpp_source, native.magnification, native.read_level) == (None, "none", None, 0)
        no_mpp = r"target MPP 0.5 asked for but none.tif has no MPP metadata; pass --slide-mpp"
        with pytest.raises(SlideError, match=no_mpp):
            plan_resolution(reader, patch_px=128, target_mpp=0.5)
        with pytest.raises(SlideError, match=r"magnification 20x .* pass --slide-mpp"):
            plan_resolution(reader, patch_px=128, magnification=20)
        plan = plan_resolution(reader, patch_px=128, target_mpp=0.5, slide_mpp=0.25)
    assert (plan.mpp_source, plan.read_level, plan.patch_level0_px, plan.read_px) == ("override", 1, 256, 128)


def test_invalid_targets(quarter_micron: Path) -> None:
    with open_slide(quarter_micron) as reader:
        with pytest.raises(ConfigError, match=r"either target_mpp .* or magnification"):
            plan_resolution(reader, patch_px=256, target_mpp=0.5, magnification=20)
        with pytest.raises(ConfigError, match="target_mpp must be positive"):
            plan_resolution(reader, patch_px=256, target_mpp=-1.0)
        with pytest.raises(SlideError, match="finer than the scan"):
            plan_resolution(reader, patch_px=256, target_mpp=0.1)
