"""Splitting a list of work items into N size-balanced shards, the same way in every process.

``select_shard(items, i, n, weight=...)`` is what lets N processes, or the tasks of a Slurm array
(``sbatch --array=0-(N-1)``), share a cohort without talking to each other: each one computes the
same assignment from the same list and keeps its own part. Items are placed heaviest first, each on
the shard with the least weight so far (longest-processing-time first: no shard exceeds 4/3 of the
best possible maximum), ties going to the earlier item and the lower shard; so the assignment depends
only on the items' order and weights, and every item is in exactly one shard.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import TypeVar

from balnmp_cache.errors import ConfigError

__all__ = ["parse_shard", "select_shard", "shard_of"]

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``.

    Raises:
        ConfigError: not of that form (the message shows one that is).
    """
    head, sep, tail = str(text).strip().partition("/")
    if sep and head.strip().isdigit() and tail.strip().isdigit():
        index, count = int(head), int(tail)
        if count >= 1 and 0 <= index < count:
            return index, count
    raise ConfigError(
        f"shard {text!r} is not I/N with 0 <= I < N (e.g. --shard 0/4 for the first of four shards; "
        "in a Slurm array: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)"
    )


def shard_of(weights: Sequence[float], count: int) -> list[int]:
    """The shard (0..count-1) of each item, given the items' weights (see the module docstring)."""
    if count < 1:
        raise ConfigError(f"a shard count must be at least 1, got {count}")
    order = sorted(range(len(weights)), key=lambda i: (-float(weights[i]), i))
    loads = [(0.0, shard) for shard in range(count)]  # a heap of (weight so far, shard)
    assigned = [0] * len(weights)
    for i in order:
        load, shard = heapq.heappop(loads)
        assigned[i] = shard
        heapq.heappush(loads, (load + max(0.0, float(weights[i])), shard))
    return assigned


def select_shard(items: Sequence[T], index: int, count: int, *, weight: Callable[[T], float]) -> list[T]:
    """The items of shard ``index`` of ``count``, in their original order.

    Args:
        items: the whole list, in the same order in every process.
        index: this shard, ``0 <= index < count``.
        count: the number of shards.
        weight: an item's size (patches, bytes, ...); shards get about equal total weight.

    Raises:
        ConfigError: ``index`` or ``count`` out of range.
    """
    if not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count} is out of range: give 0 <= I < N (--shard I/N)")
    assigned = shard_of([weight(item) for item in items], count)
    return [item for item, shard in zip(items, assigned, strict=True) if shard == index]
