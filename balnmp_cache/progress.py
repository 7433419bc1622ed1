"""Progress reporting without rendering: library code emits events, the CLI draws them.

A long-running function takes ``progress: ProgressCallback | None`` and calls it with
:class:`ProgressEvent` values. ``None`` means nobody listens; :func:`emit` handles that case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ProgressCallback", "ProgressEvent", "emit"]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress update.

    Attributes:
        kind: ``start`` opens a task with ``total`` steps, ``advance`` adds ``steps`` done,
            ``end`` closes it.
        task: a short name of the task, e.g. ``"slides"`` or ``"epochs"``.
        total: number of steps of the task (``start`` only; ``None`` if unknown).
        steps: steps completed by this event (``advance`` only).
        info: free-form figures to show beside the bar, e.g. ``{"patches/s": 812.0}``.
    """

    kind: Literal["start", "advance", "end"]
    task: str
    total: int | None = None
    steps: int = 0
    info: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[ProgressEvent], None]


def emit(progress: ProgressCallback | None, kind: Literal["start", "advance", "end"], task: str, **kwargs: Any) -> None:
    """Send an event to ``progress`` if there is a listener."""
    if progress is not None:
        progress(ProgressEvent(kind=kind, task=task, **kwargs))
