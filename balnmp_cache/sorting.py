"""The one order for ids a person reads: natural order, so slide 2 comes before slide 10."""

from __future__ import annotations

import re

__all__ = ["natural_key", "natural_sorted"]

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing runs of digits as numbers: ``2 < 10 < 10a < a2 < a10``."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(str(text)) if part)


def natural_sorted(items: list[str] | tuple[str, ...] | set[str]) -> list[str]:
    """``items`` in natural order."""
    return sorted(items, key=natural_key)
