"""What to tell a user whose cache holds corrupt slide files: which slides, and the command that redoes them."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CorruptSlide", "corrupt_message"]

_SHOWN = 5


@dataclass(frozen=True)
class CorruptSlide:
    """One slide file found corrupt: its id, file, what is wrong and its attributes (``{}`` if unreadable)."""

    slide_id: str
    path: Path
    reason: str
    attrs: dict[str, Any]


def _fix(cache_dir: Path, slides: Sequence[CorruptSlide]) -> str:
    names = ", ".join(s.path.name for s in slides[:_SHOWN]) + (" ..." if len(slides) > _SHOWN else "")
    delete = f"delete {names} and re-run extract: it extracts missing slides again"
    config = cache_dir / "config.toml"
    sources = [str(s.attrs.get("source_path") or "") for s in slides]
    # A slide given alone gets its file name as slide and patient id: right unless a manifest CSV set another patient.
    alone_ok = all(str(s.attrs.get("patient_id") or s.slide_id) == s.slide_id for s in slides)
    if not config.is_file() or not all(sources) or not alone_ok:
        return delete
    words = ["balnmp-cache extract", *map(shlex.quote, sources), "--config", shlex.quote(str(config)), "--force"]
    command = " ".join(words)
    return f"re-extract {'it' if len(slides) == 1 else 'them'} with: {command} (or {delete})"


def corrupt_message(cache_dir: Path, slides: Sequence[CorruptSlide]) -> tuple[str, str]:
    """``(reason, fix)`` for the one-line error that refuses a cache holding ``slides`` corrupt files."""
    if len(slides) == 1:
        (s,) = slides
        return f"slide '{s.slide_id}' ({s.path.name}) is unreadable or damaged: {s.reason}", _fix(cache_dir, slides)
    listed = "; ".join(f"slide '{s.slide_id}' ({s.path.name}: {s.reason})" for s in slides[:_SHOWN])
    more = f"; and {len(slides) - _SHOWN} more" if len(slides) > _SHOWN else ""
    return f"{len(slides)} slides are unreadable or damaged: {listed}{more}", _fix(cache_dir, slides)
