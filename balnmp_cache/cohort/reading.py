"""Reading a cohort file: a workbook checked to be one, a CSV whose delimiter is named when it is not a comma."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from balnmp_cache.errors import CohortError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["read_table", "refuse_other_delimiter"]

_WORKBOOK_MAGIC = {".xlsx": b"PK\x03\x04", ".xls": b"\xd0\xcf\x11\xe0"}  # a zip (OOXML), an OLE2 file


def read_table(source: Path) -> pd.DataFrame:
    """The cohort file as read, every value as an object; a file that is no workbook is refused plainly."""
    import pandas as pd

    suffix = source.suffix.lower()
    if suffix in _WORKBOOK_MAGIC:
        with source.open("rb") as handle:
            head = handle.read(512)
        if not head.startswith(_WORKBOOK_MAGIC[suffix]):
            what = "0 bytes" if not head else ("text" if _is_text(head) else "unknown content")
            raise CohortError(f"{source} is not an Excel workbook ({what}): export it again as {suffix}, or pass "
                              "the table as a CSV file")
    try:
        if suffix in _WORKBOOK_MAGIC:
            return pd.read_excel(source, dtype=object)
        return pd.read_csv(source, dtype=object, keep_default_na=True)
    except Exception as err:  # pandas raises many types for unreadable files
        raise CohortError(f"cannot read cohort table {source}: {err}") from err


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\0" not in head


def refuse_other_delimiter(df: pd.DataFrame, source: Path) -> None:
    """A CSV read as one column whose header holds ``;``, a tab or ``|`` was written with that delimiter."""
    columns = [c for c in df.columns if c != "source_row"]
    if len(columns) != 1:
        return
    header = str(columns[0])
    for delimiter, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
        if delimiter in header:
            raise CohortError(
                f"{source} looks {name}-separated (its header is {header[:80]!r}); save it comma-separated "
                "(e.g. Excel's 'CSV UTF-8 (Comma delimited)'), or pass the table as an .xlsx workbook"
            )
