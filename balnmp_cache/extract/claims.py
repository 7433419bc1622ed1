"""Claiming a slide before reading it: its OS lock, then the skip check again.

The reader thread claims each slide of the plan just before it reads it, so the slides held by this
process are the ones being read, encoded or written — as many as the reader's read-ahead holds,
whatever their size. A slide another process holds is left to that process (``busy``); one finished
by another process since the plan is skipped (``done``), and one another source's file took since
the plan is refused (``conflict``). The lock is released by the writer thread once the slide's file
and manifest row are written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from balnmp_cache.cache import CacheDir
from balnmp_cache.cache.skip import CachedSlide
from balnmp_cache.extract.fingerprint import source_fingerprint, source_state
from balnmp_cache.slides import SlideJob

__all__ = ["Claim", "Claimer", "cached"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming one slide: ``claimed`` with its held ``lock``, or why not."""

    status: Literal["claimed", "busy", "done", "conflict"]
    lock: Any = None
    reason: str = ""


def cached(cache: CacheDir, job: SlideJob, *, force: bool) -> CachedSlide:
    """The skip check of ``job`` (``redo`` with ``force``); an unreadable source is left to the reader."""
    if force:
        return CachedSlide("redo")
    try:  # the fingerprint reads the slide's first and last MiB: only where a complete file exists
        return cache.cached_slide(
            job.slide_id, fingerprint=partial(source_fingerprint, job), source=job.path, source_state=source_state(job)
        )
    except OSError as err:  # the source cannot be read: the reader thread fails the slide with its reason
        log.debug("fingerprint of %s failed: %s", job.slide_id, err)
        return CachedSlide("redo")


@dataclass
class Claimer:
    """Claims slides of ``cache`` for this process (see the module docstring)."""

    cache: CacheDir
    force: bool

    def __call__(self, job: SlideJob) -> Claim:
        """Lock ``job``'s slide and check it again.

        Raises:
            StorageError: the cache folder is gone, or its filesystem refuses the lock file.
        """
        lock = self.cache.lock(job.slide_id)
        if lock is None:
            log.info("%s is being extracted by another process; leaving it to that process", job.slide_id)
            return Claim("busy")
        verdict = cached(self.cache, job, force=self.force)
        if verdict.status in ("done", "conflict"):  # finished by another process since the plan
            lock.release()
            if verdict.status == "conflict":
                log.error("%s failed: %s", job.slide_id, verdict.reason)
            return Claim(verdict.status, reason=verdict.reason)
        return Claim("claimed", lock)
