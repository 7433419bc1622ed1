"""The feature store between the stages: per-slide HDF5/Zarr files, cache key, manifest, verify, load.

Format and layout: ``docs/architecture.md``, "The feature cache". Importing this package imports
numpy only; h5py and zarr are imported when a slide file is written or read.
"""

from balnmp_cache.cache.directory import CacheDir as CacheDir
from balnmp_cache.cache.directory import resolve_cache_dir as resolve_cache_dir
from balnmp_cache.cache.load import FeatureCache as FeatureCache
from balnmp_cache.cache.load import load_cache as load_cache
from balnmp_cache.cache.locks import clean_stale_temporaries as clean_stale_temporaries
from balnmp_cache.cache.locks import slide_lock as slide_lock
from balnmp_cache.cache.manifest import STATUSES as STATUSES
from balnmp_cache.cache.manifest import ManifestRow as ManifestRow
from balnmp_cache.cache.manifest import read_manifest as read_manifest
from balnmp_cache.cache.manifest import update_manifest as update_manifest
from balnmp_cache.cache.naming import FORMATS as FORMATS
from balnmp_cache.cache.naming import SCHEMA_VERSION as SCHEMA_VERSION
from balnmp_cache.cache.naming import cache_dir_name as cache_dir_name
from balnmp_cache.cache.naming import cache_key as cache_key
from balnmp_cache.cache.naming import canonical_json as canonical_json
from balnmp_cache.cache.naming import list_slide_files as list_slide_files
from balnmp_cache.cache.naming import read_cache_json as read_cache_json
from balnmp_cache.cache.naming import slide_path as slide_path
from balnmp_cache.cache.naming import write_cache_json as write_cache_json
from balnmp_cache.cache.schema import SlideFeatures as SlideFeatures
from balnmp_cache.cache.schema import SlideHeader as SlideHeader
from balnmp_cache.cache.slide import DTYPES as DTYPES
from balnmp_cache.cache.slide import is_complete as is_complete
from balnmp_cache.cache.slide import read_header as read_header
from balnmp_cache.cache.slide import read_slide as read_slide
from balnmp_cache.cache.slide import write_slide as write_slide
from balnmp_cache.cache.stores import STORES as STORES
from balnmp_cache.cache.stores import SlideStore as SlideStore
from balnmp_cache.cache.stores import store_for as store_for
from balnmp_cache.cache.verify import Problem as Problem
from balnmp_cache.cache.verify import verify_cache as verify_cache
