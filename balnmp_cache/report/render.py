"""Output formats: JSON without NaN, flat CSV tables, and one document rendered as Markdown and HTML.

A :class:`Document` (banners, sections of text, tables and figures) is built once and rendered twice:
``report.md`` links the figure files, ``report.html`` embeds the PNGs as base64 so it is self-contained.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from balnmp_cache.fsio import atomic_write_text

__all__ = [
    "Document",
    "FigureBlock",
    "Link",
    "Section",
    "TableBlock",
    "fmt_estimate",
    "fmt_p",
    "fmt_value",
    "json_safe",
    "to_html",
    "to_markdown",
    "write_csv",
    "write_json",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Link:
    """A link in a table cell: ``text`` shown, ``href`` a path relative to the report's folder."""

    text: str
    href: str


Cell = str | Link | tuple[Link, ...]
"""A table cell: text, a link, or several links side by side."""


@dataclass
class TableBlock:
    """A table: a caption, column names, rows of formatted cells and an optional note under it."""

    title: str
    columns: list[str]
    rows: Sequence[Sequence[Cell]]
    note: str | None = None


@dataclass
class FigureBlock:
    """A figure: its caption, the files written and the PNG bytes embedded in the HTML."""

    title: str
    files: list[Path]
    png: bytes


@dataclass
class Section:
    """A titled part of the report holding paragraphs (str), tables and figures in order."""

    title: str
    blocks: list[str | TableBlock | FigureBlock] = field(default_factory=list)


@dataclass
class Document:
    """The whole report: a title, warning banners shown on top, and sections."""

    title: str
    banners: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)


def fmt_value(value: float | None, digits: int = 3) -> str:
    """``0.831``, or ``–`` for an undefined value."""
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_estimate(value: float | None, ci: Sequence[float] | None, digits: int = 3) -> str:
    """``0.831 (0.775–0.878)``; the interval is left out when undefined."""
    if value is None:
        return "–"
    if ci is None:
        return fmt_value(value, digits)
    return f"{value:.{digits}f} ({ci[0]:.{digits}f}–{ci[1]:.{digits}f})"


def fmt_p(p: float | None) -> str:
    """``0.012``, ``<0.001`` or ``–``."""
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def json_safe(value: Any) -> Any:
    """Plain-Python copy of ``value``: numpy scalars and arrays converted, paths as strings, NaN/inf as ``None``."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        log.warning("a non-finite number reached the report's JSON and was written as null")
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(data: Any, path: Path) -> Path:
    """Write ``data`` as indented JSON (never NaN: see :func:`json_safe`), atomically."""
    return atomic_write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def _flatten(record: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if key.endswith("_ci"):
            flat[f"{key}_low"], flat[f"{key}_high"] = value if value else (None, None)
        elif key == "notes":
            flat[key] = "; ".join(value or [])
        elif isinstance(value, (list, tuple, dict)):
            flat[key] = json.dumps(json_safe(value))
        else:
            flat[key] = value
    return flat


def write_csv(records: Iterable[Mapping[str, Any]], path: Path, *, columns: Sequence[str] | None = None) -> Path:
    """Write records as a CSV table, atomically.

    ``<name>_ci`` becomes ``<name>_ci_low``/``_high``; ``notes`` is joined by ``; ``.
    """
    import pandas as pd

    rows = [_flatten(r) for r in records]
    if columns is not None and not rows:
        frame = pd.DataFrame(columns=[k for c in columns for k in _flatten({c: None})])
    else:
        frame = pd.DataFrame(rows)
    return atomic_write_text(path, frame.to_csv(index=False))


def _md_cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f"[{_md_cell(cell.text)}]({cell.href.replace(' ', '%20')})"
    if isinstance(cell, tuple):
        return " ".join(_md_cell(link) for link in cell)
    return str(cell).replace("|", "\\|").replace("\n", " ")


def _html_cell(cell: Cell) -> str:
    if isinstance(cell, Link):
        return f'<a href="{html.escape(cell.href)}">{html.escape(cell.text)}</a>'
    if isinstance(cell, tuple):
        return " ".join(_html_cell(link) for link in cell)
    return html.escape(str(cell))


def to_markdown(document: Document, directory: Path) -> str:
    """The document as Markdown; figures link the files written in ``directory``."""
    lines = [f"# {document.title}", ""]
    for banner in document.banners:
        lines += [f"> **Warning:** {banner}", ""]
    for section in document.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, str):
                lines += [block, ""]
            elif isinstance(block, TableBlock):
                lines += [f"**{block.title}**", ""]
                lines.append("| " + " | ".join(_md_cell(c) for c in block.columns) + " |")
                lines.append("|" + "|".join("---" for _ in block.columns) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
                lines.append("")
                if block.note:
                    lines += [f"*{block.note}*", ""]
            else:
                names = [Path(os.path.relpath(p, directory)).as_posix() for p in block.files]
                image = next((n for n in names if n.endswith(".png")), names[0] if names else None)
                if image:
                    lines += [f"![{block.title}]({image})", ""]
                lines += [f"{block.title}: " + ", ".join(f"[{n.rsplit('.', 1)[-1].upper()}]({n})" for n in names), ""]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .85em; }
caption { text-align: left; font-weight: 600; padding: .3em 0; }
th, td { border: 1px solid #ccc; padding: .25em .55em; text-align: left; vertical-align: top; }
th { background: #f2f4f7; } tr:nth-child(even) td { background: #fafbfc; }
.warning { background: #fff4e5; border: 2px solid #e67700; color: #7a3e00; padding: .6em .9em; margin: .6em 0;
           border-radius: 4px; font-weight: 600; }
.note { color: #555; font-size: .85em; margin-top: -.8em; }
figure { display: inline-block; margin: .5em 1em 1em 0; } figure img { max-width: 560px; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #444; }
"""


def to_html(document: Document) -> str:
    """The document as one self-contained HTML page (CSS inline, figures embedded as base64 PNG)."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(document.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(document.title)}</h1>",
    ]
    parts += [f'<div class="warning">&#9888; {esc(b)}</div>' for b in document.banners]
    for section in document.sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, str):
                parts.append(f"<p>{esc(block)}</p>")
            elif isinstance(block, TableBlock):
                parts.append(f"<table><caption>{esc(block.title)}</caption><thead><tr>")
                parts += [f"<th>{esc(c)}</th>" for c in block.columns]
                parts.append("</tr></thead><tbody>")
                parts += ["<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in block.rows]
                parts.append("</tbody></table>")
                if block.note:
                    if len(block.note) > 600:  # long lists of per-row notes fold away under the table
                        head, _, rest = block.note.partition("Notes: ")
                        summary = f"{head}Notes ({rest.count(' | ') + 1})" if rest else "Notes"
                        folded = f"<summary>{esc(summary)}</summary>{esc(block.note)}"
                        parts.append(f'<details class="note">{folded}</details>')
                    else:
                        parts.append(f'<p class="note">{esc(block.note)}</p>')
            else:
                data = base64.b64encode(block.png).decode("ascii")
                image = f'<img alt="{esc(block.title)}" src="data:image/png;base64,{data}">'
                parts.append(f"<figure>{image}<figcaption>{esc(block.title)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
