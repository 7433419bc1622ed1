"""MIL heads behind one contract (:class:`MILHead`), their registry, and the official-checkpoint loader.

``create_head(name, in_dim=D, n_classes=C, clinical_dim=K, **options)`` builds a head;
``head(features (B, N, D), mask (B, N), clinical (B, K)) -> (logits (B, C), attention (B, N))``.
Importing this package imports nothing heavy: ``list_heads``, ``head_spec`` and ``HeadSpec`` (the
names and capabilities of the heads) never import torch; the other names import it when first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HeadSpec": "catalog",
    "head_spec": "catalog",
    "head_specs": "catalog",
    "list_heads": "catalog",
    "MILHead": "base",
    "create_head": "registry",
    "head_options": "registry",
    "register_head": "registry",
    "ABMILHead": "heads",
    "BalnmpHead": "heads",
    "ClinicalOnlyHead": "heads",
    "GatedABMILHead": "heads",
    "MaxPoolHead": "heads",
    "MeanPoolHead": "heads",
    "OFFICIAL_HEAD_KEYS": "official",
    "load_official_head": "official",
    "split_official_state_dict": "official",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
