"""Shard selection: split a run's slides into N disjoint, size-balanced parts (``--shard i/N``).

N processes (or machines) started with ``--shard 1/N`` … ``--shard N/N`` on the same sources and output
each take one part; together they cover every slide exactly once. The split is deterministic (it depends
only on the jobs and their weights, never on timing) and balanced by size: slides are assigned largest
first to the part with the least weight so far (ties to the lowest part), the longest-processing-time
rule, whose largest part is within 4/3 of the best possible. The weight of a slide is its number of
pre-cut patch files, else the size of its file(s) on disk.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from balnmp_cache.errors import ConfigError

__all__ = ["job_weight", "select_shard"]

T = TypeVar("T")


def job_weight(job: Any) -> float:
    """A slide job's expected cost: patch files for pre-cut patches, else bytes of its file or folder."""
    files = getattr(job, "patch_files", ())
    if files:
        return float(len(files))
    path = Path(job.path)
    try:
        if path.is_dir():
            return float(sum(p.stat().st_size for p in path.iterdir() if p.is_file()))
        return float(path.stat().st_size)
    except OSError:
        return 0.0


def select_shard(
    jobs: Sequence[T], index: int, count: int, *, weight: Callable[[T], float] = job_weight,
    key: Callable[[T], str] = lambda job: str(getattr(job, "slide_id", job)),
) -> list[T]:
    """The jobs of shard ``index`` (1-based) of ``count``, in their input order.

    Args:
        jobs: every job of the run, identical in every shard's process.
        index, count: which part (1 <= index <= count) of how many.
        weight: a job's expected cost (default :func:`job_weight`).
        key: a stable name breaking ties between equal weights (default the slide id).

    Raises:
        ConfigError: ``index`` outside 1..``count``.
    """
    if count < 1 or not 1 <= index <= count:
        raise ConfigError(f"shard {index}/{count} is not i/N with 1 <= i <= N; change --shard")
    if count == 1:
        return list(jobs)
    weights = [float(weight(job)) for job in jobs]
    order = sorted(range(len(jobs)), key=lambda i: (-weights[i], key(jobs[i])))
    loads = [(0.0, part) for part in range(count)]  # a heap of (weight so far, part)
    mine = []
    for i in order:
        load, part = heapq.heappop(loads)
        if part == index - 1:
            mine.append(i)
        heapq.heappush(loads, (load + weights[i], part))
    return [jobs[i] for i in sorted(mine)]
