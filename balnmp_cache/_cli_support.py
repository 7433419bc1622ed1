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
from rich.table import Column
from rich.text import Text

from balnmp_cache._cli_layout import Paragraph
from balnmp_cache.errors import BalnmpError
from balnmp_cache.progress import ProgressEvent

console = Console(stderr=True)
# Summaries wrap themselves at spaces (balnmp_cache._cli_layout); soft wrap keeps rich from cropping a path or
# URL longer than the screen, which the terminal then wraps without a newline in it. Piped output (make demo |
# tee, CI logs) gets room for the report's table instead of rich's 80 columns.
stdout = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120, soft_wrap=True)

T = TypeVar("T")

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MESSAGE_COLUMN = len("HH:MM:SS WARNING  ")  # where a log message starts, and its wrapped lines
_LEVEL_STYLE = {"DEBUG": "dim", "INFO": "blue", "WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold red"}


class ConsoleLogHandler(logging.Handler):
    """Log records on a rich console as ``HH:MM:SS LEVEL message``, never split inside a word.

    On a terminal the message wraps at spaces, under itself; a path or URL longer than the line stays whole
    (the terminal wraps it). Elsewhere (a pipe, a file, CI) every record is one line, as written, for grep.
    """

    def __init__(self, target: Console, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.target = target
        self.setFormatter(logging.Formatter("%(message)s"))

    def render(self, record: logging.LogRecord) -> Text:
        """The record as one styled line (the formatted message may hold newlines, e.g. a traceback)."""
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        level = (f"{record.levelname:<8}", _LEVEL_STYLE.get(record.levelname, ""))
        return Text.assemble((stamp, "dim"), " ", level, " ", self.format(record))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.render(record)
            if self.target.is_terminal:
                self.target.print(Paragraph(line, indent=_MESSAGE_COLUMN), soft_wrap=True)
            else:
                self.target.print(line, soft_wrap=True, highlight=False)
        except Exception:  # logging must never take the command down
            self.handleError(record)


def _fit_consoles() -> None:
    """Follow ``COLUMNS`` as it is when a command starts (the consoles are made once, at import)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        console.width = stdout.width = int(columns)


def setup_logging(*, verbose: bool = False) -> None:
    """Send package logs to the terminal (INFO, or DEBUG with --verbose); see :class:`ConsoleLogHandler`."""
    _fit_consoles()
    root = logging.getLogger("balnmp_cache")
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        if isinstance(handler, ConsoleLogHandler):
            root.removeHandler(handler)
    handler = ConsoleLogHandler(console, logging.DEBUG if verbose else logging.INFO)
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
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            # the figures take what the bar leaves; a screen too narrow for them cuts them with an ellipsis
            TextColumn("{task.fields[info]}", markup=False, table_column=Column(no_wrap=True, overflow="ellipsis")),
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
                line = f"{event.task}: {self._done[event.task]:g}/{total or '?'}  {info}"
                console.print(line, highlight=False, markup=False, soft_wrap=True)
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
