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


class NucleiError(BalnmpError):
    """A nucleus segmenter, its package or weights, or a nucleus table is invalid or unavailable."""
