"""Encoder registry: CNNs that turn (B, h, w, 3) uint8 patches into (B, D) features.

``create_encoder(name, mode=..., weights=...)`` returns an :class:`Encoder` (model + eval transform +
identifier). Built-in encoders are registered by :mod:`balnmp_cache.encoders.zoo`; ``timm:<model_name>``
works when the optional timm extra is installed. Importing this package does not import torch.
"""

from balnmp_cache.encoders import zoo as _zoo  # noqa: F401  (registers the built-in encoders)
from balnmp_cache.encoders.registry import Encoder as Encoder
from balnmp_cache.encoders.registry import EncoderSpec as EncoderSpec
from balnmp_cache.encoders.registry import WeightsAvailability as WeightsAvailability
from balnmp_cache.encoders.registry import create_encoder as create_encoder
from balnmp_cache.encoders.registry import get_spec as get_spec
from balnmp_cache.encoders.registry import list_encoders as list_encoders
from balnmp_cache.encoders.registry import register_encoder as register_encoder
from balnmp_cache.encoders.registry import weights_status as weights_status
from balnmp_cache.encoders.zoo import IMAGENET_MEAN as IMAGENET_MEAN
from balnmp_cache.encoders.zoo import IMAGENET_STD as IMAGENET_STD
