"""Contact sheets: a slide's most and least attended patches, and the cohort's per class.

Each tile is a patch read back from the slide (or its pre-cut JPEG) with its rank, score and level-0
coordinates printed under it, so a tile can be found again in the slide, the scores table and QuPath.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from balnmp_cache.heatmap.render import font, label_image

__all__ = ["Tile", "contact_sheet", "grid_sheet"]

_EMPTY = 225
_CAPTION_LINES = 3
_LINE_PX = 14


@dataclass(frozen=True)
class Tile:
    """One patch of a sheet: its pixels (``None``: not available) and its caption lines."""

    image: np.ndarray | None
    caption: tuple[str, ...]


def _tile_image(tile: Tile, px: int) -> Image.Image:
    """The patch with its caption under it."""
    out = Image.new("RGB", (px, px + 4 + _CAPTION_LINES * _LINE_PX), "white")
    if tile.image is None:
        empty = Image.new("RGB", (px, px), (_EMPTY, _EMPTY, _EMPTY))
        ImageDraw.Draw(empty).text((6, px // 2 - 6), "no image", fill=(90, 90, 90), font=font(12))
        out.paste(empty, (0, 0))
    else:
        out.paste(Image.fromarray(tile.image).resize((px, px), Image.Resampling.BOX), (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(tile.caption[:_CAPTION_LINES]):
        draw.text((2, px + 2 + i * _LINE_PX), line, fill=(20, 20, 20), font=font(11))
    return out


def _row(tiles: Sequence[Tile], px: int, columns: int, gap: int) -> Image.Image:
    width = columns * px + (columns + 1) * gap
    height = px + 4 + _CAPTION_LINES * _LINE_PX
    row = Image.new("RGB", (width, height + gap), "white")
    for i, tile in enumerate(tiles):
        row.paste(_tile_image(tile, px), (gap + i * (px + gap), gap))
    return row


def contact_sheet(tiles: Sequence[Tile], *, px: int, lines: Sequence[str], warning: str | None = None,
                  columns: int = 8, gap: int = 6) -> Image.Image:
    """Tiles in rows of ``columns`` under a header (``lines``, then ``warning`` in red)."""
    columns = max(1, min(columns, len(tiles) or 1))
    rows = [_row(tiles[i : i + columns], px, columns, gap) for i in range(0, max(len(tiles), 1), columns)]
    body = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        body.paste(row, (0, top))
        top += row.height
    return label_image(body, lines, warning)


def grid_sheet(rows: Sequence[tuple[str, Sequence[Tile]]], *, px: int, lines: Sequence[str], columns: int,
               warning: str | None = None, gap: int = 6) -> Image.Image:
    """Titled rows of tiles (e.g. "N(+): most attended"), one row each, under a header (and a warning)."""
    columns = max(1, columns)
    parts: list[Image.Image] = []
    for title, tiles in rows:
        parts.append(label_image(_row(list(tiles)[:columns], px, columns, gap), [title]))
    width = max(p.width for p in parts) if parts else 520
    body = Image.new("RGB", (width, sum(p.height for p in parts) or 1), "white")
    top = 0
    for part in parts:
        body.paste(part, (0, top))
        top += part.height
    return label_image(body, lines, warning)
