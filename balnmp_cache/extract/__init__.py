"""Stage 1: tile slides and cache one embedding per patch (``balnmp-cache extract``)."""

from balnmp_cache.extract.config import ExtractConfig as ExtractConfig
from balnmp_cache.extract.pipeline import ExtractResult as ExtractResult
from balnmp_cache.extract.pipeline import run_extract as run_extract
