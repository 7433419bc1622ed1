"""Encoder registry: CNNs and pathology foundation models that turn (B, h, w, 3) uint8 patches into (B, D) features.

``create_encoder(name, mode=..., weights=...)`` returns an :class:`Encoder` (model + eval transform +
identifier). Built-in encoders are registered by :mod:`balnmp_cache.encoders.zoo` (ImageNet CNNs) and
:mod:`balnmp_cache.encoders.foundation` (UNI, UNI2-h, Virchow2, H-optimus-0/1, Prov-GigaPath, Phikon-v2);
``timm:<model_name>`` and ``hf-hub:ORG/NAME`` build timm models. Hub weights come from the local Hugging Face
cache only (:mod:`balnmp_cache.encoders.hub`). Importing this package does not import torch.
"""

from balnmp_cache.encoders import foundation as _foundation  # noqa: F401  (registers the foundation models)
from balnmp_cache.encoders import zoo as _zoo  # noqa: F401  (registers the built-in CNNs)
from balnmp_cache.encoders.build import PUBLISHED_WEIGHTS as PUBLISHED_WEIGHTS
from balnmp_cache.encoders.build import Encoder as Encoder
from balnmp_cache.encoders.build import create_encoder as create_encoder
from balnmp_cache.encoders.registry import CNN_MODES as CNN_MODES
from balnmp_cache.encoders.registry import TOKEN_MODES as TOKEN_MODES
from balnmp_cache.encoders.registry import EncoderSpec as EncoderSpec
from balnmp_cache.encoders.registry import WeightsAvailability as WeightsAvailability
from balnmp_cache.encoders.registry import get_spec as get_spec
from balnmp_cache.encoders.registry import list_encoders as list_encoders
from balnmp_cache.encoders.registry import register_encoder as register_encoder
from balnmp_cache.encoders.registry import registered_mpp as registered_mpp
from balnmp_cache.encoders.registry import weights_availability as weights_availability
from balnmp_cache.encoders.registry import weights_status as weights_status
from balnmp_cache.encoders.zoo import IMAGENET_MEAN as IMAGENET_MEAN
from balnmp_cache.encoders.zoo import IMAGENET_STD as IMAGENET_STD
