"""QuPath export: a slide's patches as GeoJSON detections whose measurements are the scores.

A FeatureCollection with one Feature per patch: a Polygon (the patch square in level-0 pixels, side
``patch_level0_px``, closed ring), ``properties.objectType = "detection"``, ``properties.name`` = the patch
key, and ``properties.measurements`` as a JSON object of numbers (the form QuPath 0.4 and later write and read;
NaN values are left out). The feature ``id`` is a UUID derived from the slide id and patch key, so re-exports
give the same ids. QuPath: File > Import objects from file (or drag the file onto the viewer), then
Measure > Show measurement maps; see ``docs/heatmaps.md``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from balnmp_cache.fsio import atomic_path

__all__ = ["write_geojson"]

_NAMESPACE = uuid.UUID("5b1f4f0e-7d0a-4c52-9a59-0d4a6f1f3c11")  # fixed: ids depend on slide and patch only


def _number(value: float) -> str | None:
    value = float(value)
    return None if not math.isfinite(value) else f"{value:.6g}"


def write_geojson(path: Path, *, slide_id: str, level0_xy: np.ndarray, patch_level0_px: int, keys: np.ndarray,
                  measurements: Mapping[str, np.ndarray]) -> Path:
    """Write the patches of one slide as QuPath detections, streamed feature by feature, atomically.

    Args:
        path: the ``.geojson`` file.
        slide_id: the slide (part of every feature's id).
        level0_xy: (N, 2) top-left level-0 x, y of each patch, exactly as cached.
        patch_level0_px: the side of a patch in level-0 pixels.
        keys: (N,) patch keys (the detections' names).
        measurements: name -> (N,) numbers (e.g. ``attention_logit``, ``percentile``, ``contribution``).
    """
    side = int(patch_level0_px)
    columns = {name: np.asarray(values, dtype=np.float64) for name, values in measurements.items()}
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write('{"type": "FeatureCollection", "features": [\n')
        for i, ((x, y), key) in enumerate(zip(np.asarray(level0_xy).tolist(), keys, strict=True)):
            x0, y0, x1, y1 = int(x), int(y), int(x) + side, int(y) + side
            ring = f"[[{x0}, {y0}], [{x1}, {y0}], [{x1}, {y1}], [{x0}, {y1}], [{x0}, {y0}]]"
            values = {name: _number(column[i]) for name, column in columns.items()}
            shown = ", ".join(f"{json.dumps(name)}: {v}" for name, v in values.items() if v is not None)
            feature_id = uuid.uuid5(_NAMESPACE, f"{slide_id}/{key}")
            geometry = f'{{"type": "Polygon", "coordinates": [{ring}]}}'
            properties = (f'{{"objectType": "detection", "name": {json.dumps(str(key))}, '
                          f'"measurements": {{{shown}}}}}')
            separator = "" if i == 0 else ",\n"
            handle.write(f'{separator}{{"type": "Feature", "id": "{feature_id}", "geometry": {geometry}, '
                         f'"properties": {properties}}}')
        handle.write("\n]}\n")
    return Path(path)
