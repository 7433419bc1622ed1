"""Patch filters: which read patches are kept, chosen from a table by ``patch_filter``.

A filter decides from a patch's pixels (after outside-polygon pixels are painted white) whether
it is kept, names the settings that change the result (they go into the cache key and every
slide file, see :mod:`balnmp_cache.extract.provenance`), says in words what it keeps (for the
manifest reason of a slide with no patch kept), and may let the region grid skip cells that are
sure to be dropped before they are read (:attr:`PatchFilter.max_outside`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from balnmp_cache.errors import ConfigError
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.slides.tiling import OFFICIAL_WHITE_RATIO_MAX, background_ratio, passes_white_filter

__all__ = ["PATCH_FILTERS", "BackgroundFilter", "PatchFilter", "WhiteRatioFilter", "patch_filter_for"]


class PatchFilter(Protocol):
    """Keeps or drops patches by their pixels.

    Attributes:
        name: the ``patch_filter`` value that selects it.
        max_outside: a painted (outside-polygon) share at which a grid cell is dropped for sure, so
            the region grid may skip it unread; ``None`` reads every cell that touches a polygon.
    """

    name: ClassVar[str]

    @property
    def max_outside(self) -> float | None: ...

    def keep(self, patches: np.ndarray) -> np.ndarray:
        """(B, h, w, 3) uint8 -> (B,) bool, True where the patch is kept."""

    def provenance(self) -> dict[str, Any]:
        """``patch_filter`` and the filter's threshold, by the names of the extract configuration."""

    def describe(self) -> str:
        """What a kept patch satisfies, in words (e.g. ``white ratio < 0.3``)."""


@dataclass(frozen=True)
class WhiteRatioFilter:
    """The official rule: drop a patch when ``np.sum(patch == 255) / 3 / (h * w) >= white_ratio_max``."""

    white_ratio_max: float = OFFICIAL_WHITE_RATIO_MAX
    name: ClassVar[str] = "white_ratio"

    @property
    def max_outside(self) -> float:
        # painted pixels are pure white, so a cell whose painted share reaches the threshold fails anyway
        return self.white_ratio_max

    def keep(self, patches: np.ndarray) -> np.ndarray:
        """(B, h, w, 3) uint8 -> (B,) bool."""
        return passes_white_filter(patches, white_ratio_max=self.white_ratio_max)

    def provenance(self) -> dict[str, Any]:
        """``patch_filter`` and ``white_ratio_max``."""
        return {"patch_filter": self.name, "white_ratio_max": self.white_ratio_max}

    def describe(self) -> str:
        """``white ratio < <threshold>``."""
        return f"white ratio < {self.white_ratio_max:g}"


@dataclass(frozen=True)
class BackgroundFilter:
    """Drop a patch when its share of near-white or low-saturation pixels is ``>= background_max``."""

    background_max: float = 0.5
    name: ClassVar[str] = "background"

    @property
    def max_outside(self) -> None:
        # Painted pixels count as background too, so background_max would be safe here as well; None
        # keeps the grid as it has always been for this filter (the "0 of N candidates" reasons use it).
        return None

    def keep(self, patches: np.ndarray) -> np.ndarray:
        """(B, h, w, 3) uint8 -> (B,) bool."""
        return background_ratio(patches) < self.background_max

    def provenance(self) -> dict[str, Any]:
        """``patch_filter`` and ``background_max``."""
        return {"patch_filter": self.name, "background_max": self.background_max}

    def describe(self) -> str:
        """``background < <threshold>``."""
        return f"background < {self.background_max:g}"


PATCH_FILTERS: dict[str, Callable[[ExtractConfig], PatchFilter]] = {
    WhiteRatioFilter.name: lambda config: WhiteRatioFilter(config.white_ratio_max),
    BackgroundFilter.name: lambda config: BackgroundFilter(config.background_max),
}
"""``patch_filter`` value -> the filter built from the extract configuration."""


def patch_filter_for(config: ExtractConfig) -> PatchFilter:
    """The patch filter ``config.patch_filter`` names, with its threshold from ``config``.

    Raises:
        ConfigError: an unknown filter name (the message lists the valid ones).
    """
    try:
        build = PATCH_FILTERS[config.patch_filter]
    except KeyError:
        choices = ", ".join(PATCH_FILTERS)
        message = f"patch_filter '{config.patch_filter}' is not one of {choices}; change --patch-filter"
        raise ConfigError(message) from None
    return build(config)
