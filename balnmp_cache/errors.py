"""Exception types. Every message names the bad value, the valid choices and the flag or key to change."""

from __future__ import annotations


class BalnmpError(Exception):
    """Base class for errors a user can fix; the CLI prints the message without a traceback."""


class ConfigError(BalnmpError):
    """A stage configuration file or a CLI flag is invalid."""


class SlideError(BalnmpError):
    """One slide cannot be processed; the message is a one-line reason for the manifest."""


class EncoderError(BalnmpError):
    """An encoder name, mode or weights source is invalid or unavailable."""


class CacheError(BalnmpError):
    """A feature cache is missing, incomplete, inconsistent or of an unknown format."""


class CohortError(BalnmpError):
    """Clinical table, labels or splits are invalid; the message lists the offending rows."""


class ReportInputError(BalnmpError):
    """A predictions file given to the report is invalid; the message names the file and rows."""


REEXTRACT_FIX = "delete it and re-run extract, or re-extract it with --force"
"""How to repair one corrupt slide file (the default fix of :class:`CorruptCacheError`)."""

FOREIGN_FIX = "re-create it with the tool that wrote it, or delete it"
"""How to repair a corrupt CLAM / TRIDENT / STAMP file, which extract cannot redo."""


class CorruptCacheError(CacheError):
    """A slide file is unreadable, truncated, or its content no longer matches its checksums.

    Attributes:
        path: the slide file (or Zarr store).
        reason: what is wrong, one line, without the fix.
    """

    def __init__(self, path: object, reason: str, fix: str = REEXTRACT_FIX) -> None:
        self.path, self.reason, self.fix = path, reason, fix
        super().__init__(f"{path} is corrupt: {reason}; {fix}")

    def __reduce__(self) -> tuple[type, tuple[object, str, str]]:  # pickling passes the three parts again
        return type(self), (self.path, self.reason, self.fix)


class StorageError(CacheError):
    """The filesystem under a cache refused a write: full, read-only, no permission, or gone."""


class NucleiError(BalnmpError):
    """A nucleus segmenter, its package or weights, or a nucleus table is invalid or unavailable."""
