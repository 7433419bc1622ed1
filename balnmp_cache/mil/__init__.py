"""MIL heads behind one contract (:class:`MILHead`), their registry, and the official-checkpoint loader.

``create_head(name, in_dim=D, n_classes=C, clinical_dim=K, **options)`` builds a head;
``head(features (B, N, D), mask (B, N), clinical (B, K)) -> (logits (B, C), attention (B, N))``.
Importing this package imports torch.
"""

from balnmp_cache.mil.base import MILHead as MILHead
from balnmp_cache.mil.heads import (
    ABMILHead as ABMILHead,
    BalnmpHead as BalnmpHead,
    ClinicalOnlyHead as ClinicalOnlyHead,
    GatedABMILHead as GatedABMILHead,
    MaxPoolHead as MaxPoolHead,
    MeanPoolHead as MeanPoolHead,
)
from balnmp_cache.mil.official import (
    OFFICIAL_HEAD_KEYS as OFFICIAL_HEAD_KEYS,
    load_official_head as load_official_head,
    split_official_state_dict as split_official_state_dict,
)
from balnmp_cache.mil.registry import (
    create_head as create_head,
    head_options as head_options,
    list_heads as list_heads,
    register_head as register_head,
)

__all__ = [
    "OFFICIAL_HEAD_KEYS",
    "ABMILHead",
    "BalnmpHead",
    "ClinicalOnlyHead",
    "GatedABMILHead",
    "MILHead",
    "MaxPoolHead",
    "MeanPoolHead",
    "create_head",
    "head_options",
    "list_heads",
    "load_official_head",
    "register_head",
    "split_official_state_dict",
]
