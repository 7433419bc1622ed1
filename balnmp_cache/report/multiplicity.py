"""Multiple-testing adjustment of p-values: Holm (family-wise error) and Benjamini–Hochberg (false discovery rate).

Both take the family's raw p-values (``None`` entries are left out of the family and stay ``None``)
and return adjusted p-values in the same order, capped at 1 and monotone in the raw ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["benjamini_hochberg", "holm"]


def _adjust(p_values: Sequence[float | None], step: Callable[[np.ndarray], np.ndarray]) -> list[float | None]:
    """``step`` applied to the defined p-values sorted ascending; the results put back in the input order."""
    index = np.array([i for i, p in enumerate(p_values) if p is not None], dtype=np.int64)
    p = np.array([p_values[i] for i in index], dtype=np.float64)
    out: list[float | None] = [None] * len(p_values)
    order = np.argsort(p, kind="mergesort")
    for rank, value in zip(order, np.minimum(1.0, step(p[order])) if len(p) else [], strict=True):
        out[int(index[rank])] = float(value)
    return out


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment: ``max_{j <= i} min(1, (m - j + 1) p_(j))`` for the ``i``-th smallest p."""
    return _adjust(p_values, lambda p: np.maximum.accumulate((len(p) - np.arange(len(p))) * p))


def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini–Hochberg step-up adjustment: ``min_{j >= i} min(1, m p_(j) / j)`` for the ``i``-th smallest p."""
    return _adjust(p_values, lambda p: np.minimum.accumulate((p * len(p) / np.arange(1, len(p) + 1))[::-1])[::-1])
