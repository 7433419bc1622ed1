"""Stage 1: tile slides and cache one embedding per patch (``balnmp-cache extract``).

Importing this package loads the configuration only (pydantic); the pipeline, and with it the
slide readers, the encoders and the cache, is imported when ``run_extract`` or ``ExtractResult``
is first used, so the CLI can build its options from :class:`ExtractConfig` at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from balnmp_cache.extract.config import ExtractConfig as ExtractConfig
from balnmp_cache.lazy import lazy_attributes

if TYPE_CHECKING:
    from balnmp_cache.extract.pipeline import ExtractResult as ExtractResult
    from balnmp_cache.extract.pipeline import run_extract as run_extract

__all__ = ["ExtractConfig", "ExtractResult", "run_extract"]

_PIPELINE = "balnmp_cache.extract.pipeline"
__getattr__ = lazy_attributes(__name__, {"ExtractResult": _PIPELINE, "run_extract": _PIPELINE})
