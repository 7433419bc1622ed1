"""``manifest.csv``: one row per slide, safe to update from several extract processes at once.

Columns: ``slide_id, patient_id, source, status, reason, n_patches, seconds``. ``status`` is
``ok`` (a complete file exists), ``failed`` (``reason`` says why) or ``empty`` (no patches, no
file). A slide skipped on re-run because its file is complete is not a status: its row is simply
left as it was. Updates are read-modify-write under ``.locks/manifest.lock`` followed by an atomic
replace, so readers never see a half-written manifest and concurrent writers never lose rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Literal

from balnmp_cache.cache.locks import file_lock, manifest_lock_path
from balnmp_cache.cache.naming import MANIFEST_CSV
from balnmp_cache.errors import CacheError
from balnmp_cache.fsio import atomic_write_text

__all__ = ["COLUMNS", "STATUSES", "ManifestRow", "read_manifest", "update_manifest"]

STATUSES: tuple[str, ...] = ("ok", "failed", "empty")


@dataclass(frozen=True, kw_only=True)
class ManifestRow:
    """One slide's outcome in a cache.

    Attributes:
        slide_id: the slide.
        patient_id: the patient the slide belongs to ('' if unknown).
        source: where the slide came from (a path or a BCNB reference).
        status: ``ok``, ``failed`` or ``empty``.
        reason: one line saying why the slide failed or is empty ('' when ok).
        n_patches: patches written (0 unless ok).
        seconds: wall time spent on the slide.
    """

    slide_id: str
    patient_id: str = ""
    source: str = ""
    status: Literal["ok", "failed", "empty"]
    reason: str = ""
    n_patches: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise CacheError(
                f"manifest status '{self.status}' of slide '{self.slide_id}' is not one of {', '.join(STATUSES)}"
            )
        if not self.slide_id:
            raise CacheError("a manifest row needs a non-empty slide_id")


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ManifestRow))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _parse(path: Path, text: str) -> list[ManifestRow]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise CacheError(f"{path} lacks column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
    rows = []
    for line, record in enumerate(reader, start=2):
        try:
            rows.append(
                ManifestRow(
                    slide_id=record["slide_id"],
                    patient_id=record["patient_id"],
                    source=record["source"],
                    status=record["status"],  # type: ignore[arg-type]
                    reason=record["reason"],
                    n_patches=int(record["n_patches"] or 0),
                    seconds=float(record["seconds"] or 0.0),
                )
            )
        except (ValueError, CacheError) as err:
            raise CacheError(f"{path} line {line} is invalid ({err}); fix or delete that row") from err
    return rows


def read_manifest(cache_dir: Path) -> list[ManifestRow]:
    """The rows of ``cache_dir/manifest.csv`` sorted by slide id; ``[]`` when there is no manifest.

    Raises:
        CacheError: the file lacks a column or has an invalid row (the message names the line).
    """
    path = Path(cache_dir) / MANIFEST_CSV
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return _parse(path, text)


def _format(rows: Iterable[ManifestRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        values = list(astuple(row))
        values[1:5] = [_one_line(v) for v in values[1:5]]
        values[6] = f"{row.seconds:.3f}"
        writer.writerow(values)
    return buffer.getvalue()


def update_manifest(cache_dir: Path, rows: Iterable[ManifestRow], *, timeout_s: float = 120.0) -> None:
    """Merge ``rows`` into ``cache_dir/manifest.csv``: one row per slide id, the latest wins.

    Rows of other slides are kept; the file is sorted by slide id and replaced atomically while
    holding the manifest lock, so concurrent processes may call this freely.

    Raises:
        CacheError: the lock was not free within ``timeout_s`` or the existing file is invalid.
    """
    cache_dir = Path(cache_dir)
    new = list(rows)
    with file_lock(manifest_lock_path(cache_dir), timeout_s=timeout_s):
        merged = {row.slide_id: row for row in read_manifest(cache_dir)}
        merged.update((row.slide_id, row) for row in new)
        atomic_write_text(cache_dir / MANIFEST_CSV, _format(merged[k] for k in sorted(merged)), durable=True)
