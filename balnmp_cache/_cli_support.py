"""Rendering for the CLI only: logging handlers, rich progress bars, error display.

Library modules never import this; they log and emit :class:`~balnmp_cache.progress.ProgressEvent`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from balnmp_cache.errors import BalnmpError
from balnmp_cache.progress import ProgressEvent

console = Console(stderr=True)
# Piped output (make demo | tee, CI logs) gets room for the report's table instead of rich's 80 columns.
stdout = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120)

T = TypeVar("T")

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _fit_consoles() -> None:
    """Follow ``COLUMNS`` as it is when a command starts (the consoles are made once, at import)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        console.width = stdout.width = int(columns)


def setup_logging(*, verbose: bool = False) -> None:
    """Send package logs to the terminal through rich (INFO, or DEBUG with --verbose)."""
    _fit_consoles()
    root = logging.getLogger("balnmp_cache")
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        if isinstance(handler, RichHandler):
            root.removeHandler(handler)
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.addHandler(handler)


@contextmanager
def log_to_file(path: Path) -> Iterator[Path]:
    """Also write every package log record (DEBUG and up) to ``path`` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger("balnmp_cache")
    root.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()


def _format_info(info: dict[str, Any]) -> str:
    parts = []
    for key, value in info.items():
        if isinstance(value, float):
            value = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        parts.append(f"{key} {value}")
    return "  ".join(parts)


class RichProgress:
    """A :data:`~balnmp_cache.progress.ProgressCallback` that draws one rich bar per task."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        self._tasks: dict[str, TaskID] = {}
        self._done: dict[str, float] = {}
        self._totals: dict[str, int | None] = {}
        self._last_plain = 0.0

    def __enter__(self) -> RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._progress.__exit__(kind, error, trace)

    def __call__(self, event: ProgressEvent) -> None:
        info = _format_info(event.info)
        if event.kind == "start":
            self._tasks[event.task] = self._progress.add_task(event.task, total=event.total, info=info)
            self._done[event.task], self._totals[event.task] = 0, event.total
            return
        task_id = self._tasks.get(event.task)
        if task_id is None:
            return
        if event.kind == "advance":
            self._progress.update(task_id, advance=event.steps, info=info)
            self._done[event.task] += event.steps
            if not console.is_terminal and time.monotonic() - self._last_plain > 10:
                # without a terminal (CI, make | tee) print a line every 10 s instead of a bar
                self._last_plain = time.monotonic()
                total = self._totals[event.task]
                console.print(f"{event.task}: {self._done[event.task]:g}/{total or '?'}  {info}", highlight=False)
        else:
            self._progress.update(task_id, info=info)


def run_guarded(fn: Callable[[], T]) -> T:
    """Run a command body; a user error or a failed filesystem call prints one line (no traceback), exit 2.

    What counts is :func:`balnmp_cache._cli_errors.user_message`; any other exception keeps its traceback.
    """
    try:
        return fn()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]; finished work is kept and a re-run resumes")
        sys.exit(130)
    except Exception as err:
        from balnmp_cache._cli_errors import user_message

        message = str(err) if isinstance(err, BalnmpError) else user_message(err)
        if message is None:
            raise
        console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        logging.getLogger("balnmp_cache").debug("error details", exc_info=True)
        sys.exit(2)
