"""Which level to read and how many level-0 pixels one patch covers, for a target MPP or magnification.

Stage 1 reads at native resolution by default (the official BALNMP patches are 256 px of the full
resolution JPEG). A target is opt-in:

- ``target_mpp`` (µm per patch pixel) needs the slide's MPP: from the metadata, or ``slide_mpp`` as
  an override (``--slide-mpp``; BCNB JPEGs carry none).
- ``magnification`` is converted with the usual convention **MPP = 10 µm / magnification**
  (20x = 0.5 µm/px) when the slide's MPP is known; otherwise the objective power is used as a ratio
  (downsample = objective power / magnification). Neither known: an error naming ``--slide-mpp``.

The patch covers ``patch_level0_px = round(patch_px * downsample)`` level-0 pixels; it is read at the
coarsest level that is not coarser than needed (:func:`best_level_for_downsample`), as ``read_px``
pixels of that level, then resized to ``patch_px`` by the caller when ``read_px != patch_px``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from balnmp_cache.errors import ConfigError, SlideError
from balnmp_cache.slides.readers import SlideReader, best_level_for_downsample

__all__ = ["ResolutionPlan", "plan_resolution"]

# Targets up to 10 % finer than the scan are read at level 0 and upsampled slightly; finer is refused.
_UPSAMPLE_TOLERANCE = 0.9
_NATIVE_TOLERANCE = 0.01  # a target within 1% of the scan's resolution reads at native resolution


@dataclass(frozen=True)
class ResolutionPlan:
    """How to cut patches from one slide.

    Attributes:
        patch_px: side of a patch as handed to the encoder's transform, in pixels.
        patch_level0_px: side of a patch in level-0 pixels (the grid stride).
        read_level: the pyramid level to read.
        read_px: side to read at ``read_level``; resize to ``patch_px`` when different.
        downsample: ``patch_level0_px / patch_px``, level-0 pixels per patch pixel.
        mpp: effective µm per patch pixel, ``None`` when the slide's MPP is unknown.
        mpp_source: ``"metadata"``, ``"override"`` (``slide_mpp``) or ``"none"``.
        magnification: effective magnification of the patch (objective power / downsample, else
            10 / mpp), ``None`` when neither is known.
    """

    patch_px: int
    patch_level0_px: int
    read_level: int
    read_px: int
    downsample: float
    mpp: float | None
    mpp_source: Literal["metadata", "override", "none"]
    magnification: float | None


def plan_resolution(
    reader: SlideReader,
    *,
    patch_px: int,
    target_mpp: float | None = None,
    magnification: float | None = None,
    slide_mpp: float | None = None,
) -> ResolutionPlan:
    """Plan the read for one slide.

    Args:
        reader: the open slide.
        patch_px: patch side in output pixels (256 for BALNMP).
        target_mpp: wanted µm per patch pixel; ``None`` with ``magnification`` ``None`` = native.
        magnification: wanted magnification (e.g. 20 for 20x), alternative to ``target_mpp``.
        slide_mpp: µm per level-0 pixel to use instead of the metadata (``--slide-mpp``).

    Raises:
        ConfigError: both targets given, or a non-positive value.
        SlideError: a target is asked for but the slide's MPP (or objective power) is unknown, or the
            target is finer than the scan.
    """
    _check_targets(patch_px=patch_px, target_mpp=target_mpp, magnification=magnification, slide_mpp=slide_mpp)
    base_mpp, source = _base_mpp(reader, slide_mpp)
    downsample = _downsample(reader, base_mpp, target_mpp=target_mpp, magnification=magnification)
    patch_level0_px = max(1, round(patch_px * downsample))
    actual = patch_level0_px / patch_px
    read_level = best_level_for_downsample(reader, actual)
    read_px = max(1, round(patch_level0_px / reader.level_downsamples[read_level]))
    mpp = base_mpp * actual if base_mpp is not None else None
    if reader.magnification is not None:
        effective_mag: float | None = reader.magnification / actual
    elif mpp is not None:
        effective_mag = 10.0 / mpp
    else:
        effective_mag = None
    return ResolutionPlan(
        patch_px=int(patch_px),
        patch_level0_px=int(patch_level0_px),
        read_level=int(read_level),
        read_px=int(read_px),
        downsample=float(actual),
        mpp=mpp,
        mpp_source=source,
        magnification=effective_mag,
    )


def _check_targets(**values: float | None) -> None:
    """At most one of target_mpp / magnification, and every given value positive."""
    if values["target_mpp"] is not None and values["magnification"] is not None:
        raise ConfigError("give either target_mpp (--target-mpp) or magnification (--magnification), not both")
    for key, value in values.items():
        if value is not None and not value > 0:
            raise ConfigError(f"{key} must be positive, got {value!r} (--{key.replace('_', '-')})")


MppSource = Literal["metadata", "override", "none"]


def _base_mpp(reader: SlideReader, slide_mpp: float | None) -> tuple[float | None, MppSource]:
    """µm per level-0 pixel and where it comes from: the override, the metadata, or nowhere."""
    if slide_mpp is not None:
        return float(slide_mpp), "override"
    if reader.mpp is not None:
        return float(reader.mpp), "metadata"
    return None, "none"


def _downsample(
    reader: SlideReader, base_mpp: float | None, *, target_mpp: float | None, magnification: float | None
) -> float:
    """Level-0 pixels per output pixel for the requested target (1.0 = native)."""
    name = reader.path.name
    objective = reader.magnification
    if target_mpp is not None:
        if base_mpp is None:
            raise SlideError(f"target MPP {target_mpp:g} asked for but {name} has no MPP metadata; pass --slide-mpp")
        downsample = target_mpp / base_mpp
    elif magnification is None:
        downsample = 1.0
    elif base_mpp is not None:
        downsample = (10.0 / magnification) / base_mpp
    elif objective is not None:
        downsample = objective / magnification
    else:
        raise SlideError(
            f"magnification {magnification:g}x asked for but {name} has neither MPP nor objective power "
            "metadata; pass --slide-mpp"
        )
    if abs(downsample - 1.0) < _NATIVE_TOLERANCE:
        downsample = 1.0  # e.g. --magnification 20 on a 0.499 um/px "20x" scan: read natively, no resampling
    if downsample < _UPSAMPLE_TOLERANCE:
        wanted = f"target MPP {target_mpp:g}" if target_mpp is not None else f"magnification {magnification:g}x"
        raise SlideError(
            f"{wanted} is finer than the scan of {name} (downsample {downsample:.3f} < 1); "
            "choose a coarser --target-mpp / --magnification or read at native resolution"
        )
    return downsample
