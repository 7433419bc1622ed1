"""``manifest.csv``: one row per slide, safe to update from several extract processes at once.

Columns: ``slide_id, patient_id, source, status, reason, n_patches, seconds``. ``status`` is
``ok`` (a complete file exists), ``failed`` (``reason`` says why) or ``empty`` (no patches, no
file). A slide skipped on re-run because its file is complete is not a status: its row is simply
left as it was.

Extract appends each slide's row to the journal (:func:`append_rows`, O(1) per slide, see
:mod:`balnmp_cache.cache.journal`); :func:`read_manifest` returns ``manifest.csv`` with the journal
applied, and :func:`update_manifest` compacts: under ``.locks/manifest.lock`` it folds the journal
and the given rows into ``manifest.csv`` (and the journal's index entries into ``.index.json``),
replaced atomically, so readers never see a half-written manifest and concurrent writers never
lose rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import asdict, astuple, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from balnmp_cache.cache import index, journal
from balnmp_cache.cache.naming import MANIFEST_CSV
from balnmp_cache.errors import CacheError
from balnmp_cache.fsio import atomic_write_text

__all__ = ["COLUMNS", "STATUSES", "ManifestRow", "append_rows", "read_manifest", "rows_of", "update_manifest"]

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


def row_record(row: ManifestRow) -> dict[str, object]:
    """``row`` as the ``"row"`` part of a journal record (text fields on one line, as in the CSV)."""
    data = asdict(row)
    for name in ("patient_id", "source", "reason"):
        data[name] = _one_line(data[name])
    return data


def rows_of(records: Iterable[dict[str, Any]]) -> list[ManifestRow]:
    """The manifest rows among journal ``records``, in journal order (invalid ones are left out)."""
    rows = []
    for record in records:
        data = record.get("row")
        if not isinstance(data, dict):
            continue
        try:
            rows.append(ManifestRow(**{name: data[name] for name in COLUMNS if name in data}))
        except (TypeError, CacheError):
            continue
    return rows


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


def _read_csv(cache_dir: Path) -> list[ManifestRow]:
    path = Path(cache_dir) / MANIFEST_CSV
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return _parse(path, text)


def _merge(*groups: Iterable[ManifestRow]) -> list[ManifestRow]:
    merged = {row.slide_id: row for group in groups for row in group}
    return [merged[k] for k in sorted(merged)]


def read_manifest(cache_dir: Path) -> list[ManifestRow]:
    """The rows of ``cache_dir/manifest.csv`` with the journal applied, sorted by slide id; ``[]`` when
    there is neither. Takes no lock and writes nothing (a read-only cache is readable).

    Raises:
        CacheError: the file lacks a column or has an invalid row (the message names the line).
    """
    rows, records = journal.snapshot(Path(cache_dir), lambda: _read_csv(Path(cache_dir)))
    return _merge(rows, rows_of(records)) if records else rows


def append_rows(cache_dir: Path, rows: Iterable[ManifestRow], files: Iterable[index.SlideFile] = ()) -> None:
    """Record ``rows`` (and index entries ``files``) in the journal: one locked, fsynced append.

    Raises:
        CacheError: the manifest lock was not free within two minutes.
        OSError: the filesystem refused the write.
    """
    records: list[dict[str, Any]] = [{"row": row_record(row)} for row in rows]
    records += [{"file": entry.record()} for entry in files]
    journal.append_records(Path(cache_dir), records)


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
    """Compact: fold the journal and ``rows`` into ``cache_dir/manifest.csv``, one row per slide id, the latest wins.

    Rows of other slides are kept; the file is sorted by slide id and replaced atomically while
    holding the manifest lock, so concurrent processes may call this freely. The journal's index
    entries go to ``.index.json`` first, and the journal is removed last (see
    :mod:`balnmp_cache.cache.journal`). Without rows and journal nothing is written.

    Raises:
        CacheError: the lock was not free within ``timeout_s`` or the existing file is invalid.
    """
    cache_dir = Path(cache_dir)
    new = list(rows)

    def fold(records: list[dict[str, Any]]) -> None:
        if not records and not new:
            return
        entries = index.entries_of(records)
        if entries:
            index.write_index(cache_dir, {**index.read_index(cache_dir), **entries})
        merged = _merge(_read_csv(cache_dir), rows_of(records), new)
        atomic_write_text(cache_dir / MANIFEST_CSV, _format(merged), durable=True)

    journal.consume(cache_dir, fold, timeout_s=timeout_s)
