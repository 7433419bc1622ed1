"""Width-aware layout for the CLI's summaries: a word, number, path or URL is never split across lines.

Rich folds a table cell mid-word as soon as its column is narrower than the cell's longest word, and crops
what is wider than the screen. The renderables here choose the widths themselves:

- :class:`Paragraph` wraps text at spaces only, continuation lines indented; a word longer than the line is
  left whole, past the edge, for the terminal to wrap (the CLI's consoles print without cropping).
- :class:`Grid` is a table whose every column is at least as wide as its longest word, so cells wrap at
  spaces only. When the screen cannot hold it, a ``spill`` column leaves the table and is listed under it,
  one entry per row; when even that does not fit, each row becomes its name on a line, then its other
  cells as ``column: value`` pairs wrapped at spaces.
- :class:`Entries` aligns short labels and wraps a body after them, or under them on a narrow screen.

Rendering only; :mod:`balnmp_cache._cli_tables` builds the summaries from these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

__all__ = ["Column", "Entries", "Grid", "Paragraph", "longest_word", "wrap"]

_WORD = re.compile(r"\S+")
Cell = str | Text


def _text(value: Cell) -> Text:
    return value.copy() if isinstance(value, Text) else Text(value)


def longest_word(value: Cell) -> int:
    """Cells of the longest run of non-space characters in ``value`` (0 when blank)."""
    plain = value.plain if isinstance(value, Text) else value
    return max((cell_len(word) for word in _WORD.findall(plain)), default=0)


def _longest_line(value: Cell) -> int:
    plain = value.plain if isinstance(value, Text) else value
    return max((cell_len(line.strip()) for line in plain.split("\n")), default=0)


def wrap(text: Text, width: int, *, indent: int = 2) -> list[Text]:
    """``text`` broken at spaces into lines of at most ``width`` cells.

    Every line but the first (including those after a newline in ``text``) starts with ``indent`` spaces; the
    leading spaces of ``text`` and of each of its lines are kept. A word longer than its line gets a line of
    its own, whole: no word is ever split. Styles are kept.
    """
    lines: list[Text] = []
    for paragraph in text.split("\n", allow_blank=True):
        plain, start, end = paragraph.plain, 0, 0
        for match in _WORD.finditer(plain):
            prefix = indent if lines else 0
            if end == 0 or prefix + cell_len(plain[start : match.end()]) <= width:
                end = match.end()  # the first word of a paragraph keeps the spaces before it
            else:
                lines.append(_indented(paragraph[start:end], prefix))
                start, end = match.span()
        lines.append(_indented(paragraph[start:end], indent if lines else 0))
    return lines


def _indented(line: Text, indent: int) -> Text:
    return Text.assemble(" " * indent, line) if indent else line


def _emit(lines: Iterable[Text]) -> Iterator[Text]:
    """Lines as renderables that rich neither wraps nor crops again."""
    for line in lines:
        line.no_wrap, line.overflow, line.end = True, "ignore", "\n"
        yield line


class Paragraph:
    """Text wrapped at spaces to the screen, continuation lines indented by ``indent``."""

    def __init__(self, text: Cell, *, indent: int = 2, style: str = "") -> None:
        self.text = _text(text)
        if style:
            self.text.stylize(style)
        self.indent = indent

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from _emit(wrap(self.text, options.max_width, indent=self.indent))


@dataclass(frozen=True)
class Column:
    """A :class:`Grid` column: its header and how its cells are aligned."""

    header: str
    justify: Literal["left", "right"] = "left"


class Entries:
    """Rows of short labels in aligned columns, each followed by its bodies wrapped at spaces.

    A row's bodies start beside the labels; when that would leave them fewer than ``min_body`` cells, or less
    than their longest word, the labels get a line of their own and the bodies follow under them, indented.
    """

    def __init__(self, rows: Sequence[tuple[Sequence[Cell], Sequence[Cell]]], *, min_body: int = 32) -> None:
        self.rows = [([_text(c) for c in labels], [_text(b) for b in bodies]) for labels, bodies in rows]
        self.min_body = min_body

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        n_labels = max((len(labels) for labels, _ in self.rows), default=0)
        widths = [max((cell_len(labels[i].plain) for labels, _ in self.rows if i < len(labels)), default=0)
                  for i in range(n_labels)]
        gutter = sum(widths) + 2 * n_labels
        room = options.max_width - gutter
        for labels, bodies in self.rows:
            head = Text.assemble(*(Text.assemble(label, " " * (width - cell_len(label.plain) + 2))
                                   for label, width in zip(labels, widths, strict=False)))
            beside = room >= self.min_body and max((longest_word(b) for b in bodies), default=0) <= room
            if not beside:
                head.rstrip()
                yield from _emit([head])
                gutter_text, indent = "    ", 6
            else:
                gutter_text, indent = " " * gutter, gutter
            for n, body in enumerate(bodies or [Text()]):
                start = head if beside and n == 0 else Text(gutter_text)
                line = Text.assemble(start, body)
                yield from _emit(wrap(line, options.max_width, indent=indent))


class Grid:
    """A table in which no cell is ever split inside a word (see the module docstring).

    Args:
        columns: the headers (and alignment) of the columns.
        rows: one sequence of cells per row, as many as ``columns``.
        row_styles: a style per row (``None`` for none).
        spill: the index of a column that leaves the table for a list under it when the table is too wide.
        key: the index of the column that names a row in the spilled list and in the stacked blocks.
    """

    def __init__(
        self,
        columns: Sequence[Column | str],
        rows: Sequence[Sequence[Cell]],
        *,
        row_styles: Sequence[str | None] | None = None,
        spill: int | None = None,
        key: int = 0,
    ) -> None:
        self.columns = [c if isinstance(c, Column) else Column(c) for c in columns]
        self.rows = [[_text(cell) for cell in row] for row in rows]
        self.row_styles = list(row_styles) if row_styles is not None else [None] * len(self.rows)
        self.spill, self.key = spill, key

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        every = list(range(len(self.columns)))
        widths = self._widths(console, options, every)
        if widths is not None:
            yield self._table(every, widths)
            return
        if self.spill is not None:
            kept = [i for i in every if i != self.spill]
            widths = self._widths(console, options, kept)
            if widths is not None:
                yield self._table(kept, widths)
                yield self._spilled()
                return
        yield from self._stacked(width)

    def _cells(self, index: int) -> list[Text]:
        return [Text(self.columns[index].header), *(row[index] for row in self.rows)]

    def _widths(self, console: Console, options: ConsoleOptions, shown: list[int]) -> list[int] | None:
        """Column widths that fit ``options.max_width`` and hold every column's longest word, else ``None``."""
        low = [max(longest_word(c) for c in self._cells(i)) or 1 for i in shown]
        widths = [max(max(_longest_line(c) for c in self._cells(i)), 1) for i in shown]
        probe = self._table(shown, [1] * len(shown), rows=False)
        overhead = Measurement.get(console, options.update_width(10_000), probe).maximum - len(shown)
        available = options.max_width - overhead
        if sum(low) > available:
            return None
        excess = sum(widths) - available
        text_first = [self.columns[i].justify == "left" for i in shown]  # numbers wrap only when text cannot
        while excess > 0:  # narrow the widest column that can still wrap at a space
            slack = [i for i in range(len(widths)) if widths[i] > low[i]]
            pool = [i for i in slack if text_first[i]] or slack
            j = max(pool, key=lambda i: widths[i])
            widths[j] -= 1
            excess -= 1
        return widths

    def _table(self, shown: list[int], widths: list[int], *, rows: bool = True) -> Table:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
                      header_style="bold")
        for i, width in zip(shown, widths, strict=True):
            table.add_column(self.columns[i].header, justify=self.columns[i].justify, width=width, overflow="fold")
        if rows:
            for row, style in zip(self.rows, self.row_styles, strict=True):
                table.add_row(*(row[i] for i in shown), style=style)
        return table

    def _spilled(self) -> Entries:
        assert self.spill is not None
        header = self.columns[self.spill].header
        entries = [([row[self.key]], [Text.assemble((f"{header}: ", "dim"), row[self.spill])])
                   for row in self.rows if row[self.spill].plain.strip()]
        return Entries(entries)

    def _stacked(self, width: int) -> Iterator[Text]:
        for row, style in zip(self.rows, self.row_styles, strict=True):
            head = row[self.key].copy()
            head.stylize("bold")
            if style:
                head.stylize(style)
            yield from _emit([head])
            pairs = [Text.assemble((f"{column.header}: ", "dim"), row[i])
                     for i, column in enumerate(self.columns) if i != self.key and row[i].plain.strip()]
            yield from _emit(wrap(Text.assemble("  ", Text("  ").join(pairs)), width, indent=4))
