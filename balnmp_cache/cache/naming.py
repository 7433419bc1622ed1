"""Names in a feature cache: the content key, the directory name, per-slide paths and temporaries.

Everything that builds or parses a path inside a cache lives here, so the layout is defined once:

```
CACHE_ROOT/<encoder>-<mode>-<key>/        cache_dir_name()
    cache.json                             write_cache_json(): the canonical JSON hashed into <key>
    manifest.csv                           manifest.py (compacted)
    .journal.jsonl                         journal.py: manifest rows and index entries appended since
    .index.json                            index.py: what each complete slide file is (size, mtime, inode, ...)
    <slide_id>.h5 | <slide_id>.zarr        slide_path()
    .tmp-<pid>-<token>-<slide_id>.h5       temp_path(): a write in progress (or left by a crash)
    .old-<pid>-<token>-<slide_id>.zarr     a replaced Zarr store being removed
    .locks/                                locks.py: slide, writer and manifest locks
```
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from balnmp_cache.errors import CacheError
from balnmp_cache.fsio import atomic_write_text

__all__ = [
    "AUX_TEMP_RE",
    "CACHE_JSON",
    "FORMATS",
    "INDEX_JSON",
    "JOURNAL",
    "LOCKS_DIR",
    "MANIFEST_CSV",
    "SCHEMA_VERSION",
    "TempName",
    "cache_dir_name",
    "cache_key",
    "canonical_json",
    "check_slide_id",
    "format_suffix",
    "list_slide_files",
    "parse_cache_dir_name",
    "parse_temp_name",
    "read_cache_json",
    "slide_path",
    "temp_path",
    "write_cache_json",
]

SCHEMA_VERSION: int = 1
"""Version of the per-slide file layout; part of every cache key."""

FORMATS: dict[str, str] = {"hdf5": ".h5", "zarr": ".zarr"}
"""Storage format -> file suffix of one slide."""

CACHE_JSON = "cache.json"
MANIFEST_CSV = "manifest.csv"
JOURNAL = ".journal.jsonl"
INDEX_JSON = ".index.json"
LOCKS_DIR = ".locks"

# Suffixes recognised when listing a folder of slide files (ours and CLAM/TRIDENT/STAMP).
_SLIDE_SUFFIXES = (".h5", ".hdf5", ".zarr")
_KEY_RE = re.compile(r"^[0-9a-f]{12}$")
_DIR_RE = re.compile(r"^(?P<encoder>.+)-(?P<mode>[^-]+)-(?P<key>[0-9a-f]{12})$")
_TEMP_RE = re.compile(
    r"^\.(?P<kind>tmp|old)-(?P<pid>\d+)-(?P<token>[0-9a-f]{8})-(?P<slide_id>.+)(?P<suffix>\.h5|\.zarr)$"
)
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._+]+")
# Temporaries of manifest.csv / cache.json / .index.json rewrites (written and renamed within milliseconds):
# balnmp_cache.fsio's ".<name>.<pid>.<token>.tmp", and the same without ".tmp" from older versions.
AUX_TEMP_RE = re.compile(r"^\.(manifest\.csv|cache\.json|\.index\.json)\.\d+\.[0-9a-f]{8}(\.tmp)?$")


def _canonical(value: Any, where: str) -> Any:
    """Normalise ``value`` to JSON data that prints the same for equal meanings."""
    import numpy as np

    if isinstance(value, Mapping):
        return {str(k): _canonical(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _canonical(value.tolist(), where)
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        # 256 and 256.0 mean the same patch size; give them the same key.
        return int(value) if value.is_integer() else value
    if isinstance(value, PurePath):
        return value.as_posix()
    raise CacheError(
        f"cache-key parameter '{where}' has type {type(value).__name__} ({value!r}); "
        "use numbers, strings, booleans, lists or tables in the extract configuration"
    )


def canonical_json(params: Mapping[str, Any]) -> str:
    """The canonical JSON of ``params`` that :func:`cache_key` hashes (one line, sorted keys).

    ``schema_version`` is added when absent. Integral floats become integers, NaN and infinities
    become the strings ``"NaN"``/``"Infinity"``, paths become POSIX strings, tuples become lists;
    floats print as Python's shortest round-trip ``repr``, the same on every platform.

    Raises:
        CacheError: a value is not JSON-able (the message names its key).
    """
    data = _canonical(dict(params), "")
    data.setdefault("schema_version", SCHEMA_VERSION)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def cache_key(params: Mapping[str, Any]) -> str:
    """The first 12 hex digits of the SHA-256 of :func:`canonical_json` of ``params``."""
    return hashlib.sha256(canonical_json(params).encode("utf-8")).hexdigest()[:12]


def _safe(text: str) -> str:
    return _UNSAFE_RE.sub("_", text).strip("._") or "x"


def cache_dir_name(encoder: str, mode: str, key: str) -> str:
    """``"<encoder>-<mode>-<key>"`` with the encoder and mode made filesystem-safe.

    Characters other than letters, digits, ``.``, ``_`` and ``+`` become ``_`` (``"timm:vit_b"`` ->
    ``"timm_vit_b"``); a ``-`` in either part also becomes ``_`` so the name parses back unambiguously.

    Raises:
        CacheError: ``key`` is not 12 lower-case hex digits.
    """
    if not _KEY_RE.match(key):
        raise CacheError(f"cache key '{key}' is not 12 lower-case hex digits; build it with cache_key(params)")
    return f"{_safe(encoder)}-{_safe(mode)}-{key}"


def parse_cache_dir_name(name: str) -> tuple[str, str, str] | None:
    """``(encoder, mode, key)`` of a name made by :func:`cache_dir_name`, or ``None``."""
    match = _DIR_RE.match(name)
    return (match["encoder"], match["mode"], match["key"]) if match else None


def check_slide_id(slide_id: str) -> str:
    """Return ``slide_id`` if it can name a file in a cache, else raise :class:`CacheError`."""
    bad = ""
    if not isinstance(slide_id, str) or not slide_id:
        bad = "it is empty"
    elif slide_id.startswith("."):
        bad = "it starts with '.' (reserved for temporaries and locks)"
    elif any(c in slide_id for c in "/\\\0") or any(ord(c) < 32 for c in slide_id):
        bad = "it contains a path separator or a control character"
    elif len(slide_id.encode("utf-8")) > 200:
        bad = "it is longer than 200 bytes"
    if bad:
        raise CacheError(
            f"slide id {slide_id!r} cannot name a cache file: {bad}; rename the slide file "
            "(the slide id is its name without suffix)"
        )
    return slide_id


def format_suffix(format: str) -> str:
    """The file suffix of ``format`` (``.h5``, ``.zarr``).

    Raises:
        CacheError: unknown format (the message lists the valid ones).
    """
    if format not in FORMATS:
        raise CacheError(f"cache format '{format}' is not one of {', '.join(FORMATS)}; change --format")
    return FORMATS[format]


def slide_path(directory: Path, slide_id: str, format: str) -> Path:
    """THE path of one slide's features: ``directory/<slide_id>.h5`` or ``directory/<slide_id>.zarr``.

    Raises:
        CacheError: unknown ``format`` or a ``slide_id`` that cannot be a file name.
    """
    return Path(directory) / f"{check_slide_id(slide_id)}{format_suffix(format)}"


@dataclass(frozen=True)
class TempName:
    """A parsed temporary name: ``kind`` is ``tmp`` (being written) or ``old`` (being removed)."""

    kind: str
    pid: int
    token: str
    slide_id: str
    suffix: str


def temp_path(directory: Path, slide_id: str, format: str, *, kind: str = "tmp", token: str | None = None) -> Path:
    """A fresh temporary name beside the final file: ``.<kind>-<pid>-<token>-<slide_id><suffix>``."""
    suffix = format_suffix(format)
    token = token or secrets.token_hex(4)
    return Path(directory) / f".{kind}-{os.getpid()}-{token}-{check_slide_id(slide_id)}{suffix}"


def parse_temp_name(name: str) -> TempName | None:
    """Parse a name made by :func:`temp_path`; ``None`` for anything else."""
    match = _TEMP_RE.match(name)
    if not match:
        return None
    return TempName(match["kind"], int(match["pid"]), match["token"], match["slide_id"], match["suffix"])


def list_slide_files(directory: Path) -> dict[str, Path]:
    """Slide id -> file for every slide file in ``directory`` (ours and CLAM/TRIDENT/STAMP).

    Hidden entries (temporaries, locks) are ignored; the slide id is the file name without suffix.
    The result is sorted by slide id.

    Raises:
        CacheError: two files name the same slide (e.g. ``a.h5`` and ``a.zarr``).
    """
    found: dict[str, Path] = {}
    for entry in sorted(Path(directory).iterdir()):
        if entry.name.startswith(".") or entry.suffix.lower() not in _SLIDE_SUFFIXES:
            continue
        if entry.suffix.lower() == ".zarr" and not entry.is_dir():
            continue
        if entry.stem in found:
            raise CacheError(
                f"slide '{entry.stem}' has two files in {directory}: {found[entry.stem].name} and {entry.name}; "
                "delete one of them"
            )
        found[entry.stem] = entry
    return dict(sorted(found.items()))


def write_cache_json(cache_dir: Path, params: Mapping[str, Any]) -> str:
    """Write ``cache.json`` (the canonical JSON of ``params``) atomically and return the cache key.

    The file holds exactly the bytes hashed into the key plus a newline, so
    ``sha256(cache.json without its newline)[:12]`` is the key.
    """
    text = canonical_json(params)
    atomic_write_text(Path(cache_dir) / CACHE_JSON, text + "\n", durable=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def read_cache_json(cache_dir: Path) -> dict[str, Any] | None:
    """The parameters in ``cache_dir/cache.json``, or ``None`` when there is no such file.

    Raises:
        CacheError: the file is not valid JSON.
    """
    path = Path(cache_dir) / CACHE_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CacheError(f"{path} is not valid JSON ({err}); delete the cache directory and re-run extract") from err
