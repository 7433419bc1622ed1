"""Multiple-testing adjustment of p-values: Holm (family-wise error) and Benjamini–Hochberg (false discovery rate).

Both take the family's raw p-values (``None`` entries are left out of the family and stay ``None``)
and return adjusted p-values in the same order, capped at 1 and monotone in the raw ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["benjamini_hochberg", "holm"]


def _defined(p_values: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    index = np.array([i for i, p in enumerate(p_values) if p is not None], dtype=np.int64)
    return index, np.array([p_values[i] for i in index], dtype=np.float64)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment: ``max_{j <= i} min(1, (m - j + 1) p_(j))`` for the ``i``-th smallest p."""
    index, p = _defined(p_values)
    out: list[float | None] = [None] * len(p_values)
    if not len(p):
        return out
    order = np.argsort(p, kind="mergesort")
    m = len(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    for rank, value in zip(order, adjusted, strict=True):
        out[int(index[rank])] = float(value)
    return out


def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini–Hochberg step-up adjustment: ``min_{j >= i} min(1, m p_(j) / j)`` for the ``i``-th smallest p."""
    index, p = _defined(p_values)
    out: list[float | None] = [None] * len(p_values)
    if not len(p):
        return out
    order = np.argsort(p, kind="mergesort")
    m = len(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    for rank, value in zip(order, adjusted, strict=True):
        out[int(index[rank])] = float(value)
    return out
