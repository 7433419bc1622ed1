"""The pixels behind a map: a thumbnail on the canvas and crops of single patches, read back from the slide.

A slide's pixels come from its slide file (``source_path`` in the cache, or a file of the same name in one of
``slide_dirs``), or, for BCNB pre-cut patches, from the patch JPEGs themselves. Neither is needed for the
scores: without pixels the map is drawn on grey and the galleries show empty tiles.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from balnmp_cache.errors import BalnmpError
from balnmp_cache.heatmap.canvas import Canvas

__all__ = ["SlideImages"]

log = logging.getLogger(__name__)


def _find(path: Path, slide_dirs: Sequence[Path]) -> Path | None:
    if path.exists():
        return path
    for folder in slide_dirs:
        candidate = Path(folder) / path.name
        if candidate.exists():
            return candidate
    return None


class SlideImages:
    """Where one slide's pixels come from, opened on first use.

    Attributes:
        kind: ``slide`` (a slide file), ``patches`` (a folder of BCNB pre-cut patch JPEGs) or ``None``.
        path: the slide file or patch folder, ``None`` when neither was found.
        reason: why there are no pixels (``None`` when there are).
    """

    def __init__(self, attrs: dict[str, Any], slide_dirs: Sequence[Path] = ()) -> None:
        source = str(attrs.get("source_path") or "")
        found = _find(Path(source), slide_dirs) if source else None
        self.path = found
        self.kind: str | None = None
        self.reason: str | None = None
        self._reader: Any = None
        if found is None:
            self.reason = f"slide {source or '(no source_path)'} not found; pass --slide-dirs with its folder"
        elif found.is_dir() and attrs.get("roi_source") == "pre-cut BCNB patches":
            self.kind = "patches"
        else:
            self.kind = "slide"

    def _open(self) -> Any:
        from balnmp_cache.slides import open_slide

        if self._reader is None and self.kind == "slide" and self.path is not None:
            try:
                self._reader = open_slide(self.path)
            except BalnmpError as err:
                self.kind, self.reason = None, f"cannot open {self.path}: {err}"
        return self._reader

    def dimensions(self) -> tuple[int, int] | None:
        """Level-0 (width, height) of the slide file, ``None`` without one."""
        reader = self._open()
        return None if reader is None else tuple(reader.dimensions)

    def thumbnail(
        self, canvas: Canvas, level0_xy: np.ndarray, keys: np.ndarray | None, patch_level0_px: int
    ) -> np.ndarray | None:
        """(H, W, 3) uint8 of the canvas's extent, or ``None`` without pixels.

        A slide file gives its whole-slide thumbnail resized to the canvas (the canvas covers the whole slide);
        pre-cut patches are pasted at their places (``level0_xy``, in the canvas's frame) on white.
        """
        if self.kind == "patches" and keys is not None:
            return self._mosaic(canvas, level0_xy, keys, patch_level0_px)
        reader = self._open()
        if reader is None:
            return None
        image = Image.fromarray(reader.thumbnail(max(canvas.width_px, canvas.height_px)))
        if image.size != (canvas.width_px, canvas.height_px):
            image = image.resize((canvas.width_px, canvas.height_px), Image.Resampling.BILINEAR)
        return np.asarray(image.convert("RGB"))

    def _patch_file(self, key: str) -> Path:
        assert self.path is not None
        return self.path / Path(str(key)).name

    def _mosaic(self, canvas: Canvas, level0_xy: np.ndarray, keys: np.ndarray, patch_level0_px: int) -> np.ndarray:
        out = Image.new("RGB", (canvas.width_px, canvas.height_px), "white")
        corners = np.floor(canvas.to_px(level0_xy)).astype(np.int64)
        side = max(1, round(patch_level0_px / canvas.level0_per_px[0]))
        for (x, y), key in zip(corners.tolist(), keys, strict=True):
            try:
                with Image.open(self._patch_file(key)) as patch:
                    out.paste(patch.convert("RGB").resize((side, side), Image.Resampling.BOX), (x, y))
            except OSError as err:
                log.debug("patch %s not drawn: %s", key, err)
        return np.asarray(out)

    def crops(
        self, level0_xy: np.ndarray, keys: Sequence[str], patch_level0_px: int, px: int
    ) -> list[np.ndarray | None]:
        """(px, px, 3) uint8 image of each patch (``None`` where unreadable), read at the coarsest fitting level."""
        if self.kind == "patches":
            return [self._crop_file(key, px) for key in keys]
        reader = self._open()
        if reader is None:
            return [None] * len(keys)
        from balnmp_cache.slides import best_level_for_downsample

        level = best_level_for_downsample(reader, patch_level0_px / px)
        size = max(1, round(patch_level0_px / reader.level_downsamples[level]))
        out: list[np.ndarray | None] = []
        for x, y in np.asarray(level0_xy).tolist():
            region = reader.read_region((int(x), int(y)), level, (size, size))
            out.append(np.asarray(Image.fromarray(region).resize((px, px), Image.Resampling.BOX)))
        return out

    def _crop_file(self, key: str, px: int) -> np.ndarray | None:
        try:
            with Image.open(self._patch_file(key)) as patch:
                return np.asarray(patch.convert("RGB").resize((px, px), Image.Resampling.BOX))
        except OSError as err:
            log.debug("patch %s not read: %s", key, err)
            return None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> SlideImages:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
