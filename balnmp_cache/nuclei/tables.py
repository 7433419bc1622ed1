"""The nucleus tables of one run: ``<out>/tables/<segmenter>-nuclei-<key>/<slide_id>.nuclei.parquet``.

The folder is a :class:`~balnmp_cache.cache.CacheDir` (``cache.json`` holding exactly what was hashed
into the key, ``manifest.csv`` and its journal, ``.locks/``), so slides are claimed, recorded and
recovered as in extract.
Each slide is one Parquet file (pandas reads it: ``pd.read_parquet(path)``), one row per nucleus; its
schema metadata holds, as JSON, the slide's attributes (``balnmp.attrs``: ids, source and fingerprint,
cache key, segmenter, MPP and units, counts, ``complete``) and its patch list (``balnmp.patches``: one
entry per analysed patch, nuclei or not: key, level-0 top-left x, y, region, tissue area, nucleus count,
density, orientation order). A file is written to a temporary name beside it and renamed when complete
(:func:`~balnmp_cache.fsio.atomic_path`), while the writer holds the slide's lock.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.cache import CacheDir, ManifestRow
from balnmp_cache.cache.naming import check_slide_id
from balnmp_cache.errors import CacheError, NucleiError
from balnmp_cache.fsio import atomic_path

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["SUFFIX", "NucleusTable", "TableDir", "read_table"]

log = logging.getLogger(__name__)

SUFFIX = ".nuclei.parquet"
_ATTRS, _PATCHES = b"balnmp.attrs", b"balnmp.patches"
_TEMP = re.compile(r"^\.(?P<slide_id>.+)\.nuclei\.parquet\.\d+\.[0-9a-f]{8}\.tmp$")


@dataclass
class NucleusTable:
    """One slide's table: nuclei (one row each), patches (one row each) and the slide's attributes."""

    nuclei: pd.DataFrame
    patches: pd.DataFrame
    attrs: dict[str, Any]


def _metadata(path: Path) -> dict[bytes, bytes]:
    import pyarrow.parquet as pq

    return dict(pq.read_schema(path).metadata or {})


def read_attrs(path: Path) -> dict[str, Any]:
    """The ``balnmp.attrs`` of a table file without reading its rows.

    Raises:
        NucleiError: the file is missing, not Parquet, or not a nucleus table.
    """
    try:
        meta = _metadata(path)
        return dict(json.loads(meta[_ATTRS]))
    except (OSError, KeyError, ValueError) as err:  # pyarrow's errors are OSError / ValueError subclasses
        reason = type(err).__name__
        raise NucleiError(f"{path} is not a complete nucleus table ({reason}); delete it and re-run nuclei") from err


def read_table(path: Path, columns: list[str] | None = None) -> NucleusTable:
    """Read one slide's table (``columns``: only these nucleus columns).

    Raises:
        NucleiError: as :func:`read_attrs`.
    """
    import pandas as pd

    attrs = read_attrs(path)
    patches = pd.DataFrame(json.loads(_metadata(path)[_PATCHES])).fillna(value=np.nan)
    try:
        nuclei = pd.read_parquet(path, columns=columns)
    except (OSError, ValueError) as err:
        raise NucleiError(f"{path} cannot be read ({err}); delete it and re-run nuclei") from err
    return NucleusTable(nuclei, patches, attrs)


@dataclass(frozen=True)
class TableDir:
    """The tables folder of one key; what the stage talks to (lock, done, write, record, recover)."""

    cache: CacheDir

    @classmethod
    def create(cls, root: Path, params: dict[str, Any], *, segmenter: str) -> TableDir:
        """The folder of ``params`` under ``root`` (created with its ``cache.json`` when missing)."""
        return cls(CacheDir.create(root, params, encoder=segmenter, mode="nuclei", format="hdf5", dtype="float32"))

    @property
    def directory(self) -> Path:
        return self.cache.directory

    @property
    def key(self) -> str:
        return str(self.cache.key)

    def path(self, slide_id: str) -> Path:
        """``<slide_id>.nuclei.parquet`` in the folder (the id checked as extract checks it)."""
        return self.directory / f"{check_slide_id(slide_id)}{SUFFIX}"

    def lock(self, slide_id: str) -> Any | None:
        """The slide's OS lock without waiting, or ``None`` when another process holds it."""
        return self.cache.lock(slide_id)

    def record(self, rows: list[ManifestRow]) -> None:
        """Journal ``rows`` (folded into ``manifest.csv`` by :meth:`compact`)."""
        self.cache.record(rows)

    def compact(self) -> None:
        """Fold the journalled rows into ``manifest.csv``."""
        self.cache.compact()

    def is_complete(self, slide_id: str) -> bool:
        """A table of this key exists for ``slide_id`` (never raises)."""
        try:
            attrs = read_attrs(self.path(slide_id))
        except (NucleiError, CacheError):
            return False
        return bool(attrs.get("complete")) and attrs.get("cache_key") == self.key

    def is_done(self, slide_id: str, fingerprint: Callable[[], str]) -> bool:
        """Complete for this key and computed from the same input (``fingerprint`` called only then)."""
        if not self.is_complete(slide_id):
            return False
        if read_attrs(self.path(slide_id)).get("source_fingerprint") == fingerprint():
            return True
        log.warning("%s: the table came from another input; segmenting again", slide_id)
        return False

    def n_nuclei(self, slide_id: str) -> int:
        try:
            return int(read_attrs(self.path(slide_id)).get("n_nuclei", 0))
        except NucleiError:
            return 0

    def write(self, slide_id: str, nuclei: pd.DataFrame, patches: pd.DataFrame, attrs: dict[str, Any]) -> Path:
        """Write one slide's table atomically; ``attrs`` gets ``cache_key`` and ``complete``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(nuclei, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[_ATTRS] = json.dumps({**attrs, "cache_key": self.key, "complete": True}, sort_keys=True).encode()
        columns = {k: [None if isinstance(v, float) and v != v else v for v in values]  # NaN -> null
                   for k, values in patches.to_dict(orient="list").items()}  # fmt: skip
        meta[_PATCHES] = json.dumps(columns, allow_nan=False).encode()
        target = self.path(slide_id)
        with atomic_path(target, durable=True) as tmp:
            pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")
        return target

    def recover(self) -> list[ManifestRow]:
        """Remove temporaries of dead writers; give complete tables without an ``ok`` row their row back."""
        for path in sorted(self.directory.glob(".*.tmp")):
            match = _TEMP.match(path.name)
            lock = self._try(match["slide_id"]) if match else None
            if lock is not None:  # its writer held this lock while writing: it is gone
                path.unlink(missing_ok=True)
                lock.release()
                log.info("removed a temporary left by an interrupted run: %s", path.name)
        self.compact()
        have = {row.slide_id for row in self.cache.manifest() if row.status == "ok"}
        rows = []
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            slide_id = path.name.removesuffix(SUFFIX)
            if slide_id in have or not self.is_complete(slide_id):
                continue
            attrs = read_attrs(path)
            rows.append(ManifestRow(slide_id=slide_id, patient_id=str(attrs.get("patient_id", "")),
                                    source=str(attrs.get("source_path", "")), status="ok",
                                    n_patches=int(attrs.get("n_patches", 0))))  # fmt: skip
        if rows:
            log.info("added manifest rows for %d complete table(s) whose row was lost", len(rows))
            self.record(rows)
        return rows

    def _try(self, slide_id: str) -> Any | None:
        try:
            return self.lock(slide_id)
        except CacheError:
            return None
