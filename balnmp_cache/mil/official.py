"""Loading the head of an official BALNMP checkpoint into our ``balnmp`` head.

Official checkpoints (``logs/<name>/checkpoint/best.pth`` from ``code/train.py``, or the 2021
pre-trained models of the old ``model.py``) are plain state dicts of the whole network::

    image_feature_extractor.extractor.0.{i}.*    VGG16_BN features, current code
    image_feature_extractor.0.{i}.*              the same, old model.py naming
    attention_aggregator.fc1.0.{weight,bias}     [256, D], [256]
    attention_aggregator.attention.0.*           [1, 256], [1]
    attention_aggregator.attention.3.*           [1, 1], [1]
    classifier.0.{weight,bias}                   [64, 256 + 10K], [64]   (K = 0: image-only)
    classifier.2.{weight,bias}                   [C, 64], [C]

Only the head keys are used here. The backbone keys belong to the VGG16_BN encoder, which reads
them itself from the same file (``--weights PATH`` at extraction); the head then needs the
25,088-d flattened pool5 features that encoder caches.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from balnmp_cache.errors import ConfigError
from balnmp_cache.mil.heads import BalnmpHead

__all__ = ["OFFICIAL_HEAD_KEYS", "load_official_head", "split_official_state_dict"]

logger = logging.getLogger(__name__)

OFFICIAL_HEAD_KEYS: tuple[str, ...] = tuple(
    f"{module}.{param}"
    for module in (
        "attention_aggregator.fc1.0",
        "attention_aggregator.attention.0",
        "attention_aggregator.attention.3",
        "classifier.0",
        "classifier.2",
    )
    for param in ("weight", "bias")
)
_BACKBONE_PREFIX = "image_feature_extractor."
_WRAPPER_KEYS = ("state_dict", "model")


def _unwrap(obj: Any, source: str) -> dict[str, Tensor]:
    """The state dict inside ``obj``: a plain one, or one under "state_dict"/"model"; "module." stripped."""
    if not isinstance(obj, Mapping):
        raise ConfigError(
            f"{source} does not hold a state dict (got {type(obj).__name__}); pass an official BALNMP .pth"
        )
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping):
            obj = inner
            break
    state: dict[str, Tensor] = {}
    for key, value in obj.items():
        if isinstance(key, str) and isinstance(value, Tensor):
            state[key.removeprefix("module.")] = value
    if not state:
        raise ConfigError(f"{source} holds no tensors; pass an official BALNMP .pth (a model state dict)")
    return state


def split_official_state_dict(state_dict: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Split an official state dict into (head keys, backbone keys).

    A wrapper (``{"state_dict": ...}`` or ``{"model": ...}``) and a ``module.`` prefix (from
    ``DataParallel``) are removed first. Backbone keys are those under ``image_feature_extractor.``
    in either naming (``image_feature_extractor.extractor.0.{i}.*`` or ``image_feature_extractor.0.{i}.*``)
    and are returned unchanged; every other key goes to the head part, where
    :func:`load_official_head` reports any that do not belong.

    Raises:
        ConfigError: ``state_dict`` is not a mapping or holds no tensors.
    """
    state = _unwrap(state_dict, "the state dict")
    head = {k: v for k, v in state.items() if not k.startswith(_BACKBONE_PREFIX)}
    backbone = {k: v for k, v in state.items() if k.startswith(_BACKBONE_PREFIX)}
    return head, backbone


def _read(path: Path, map_location: Any) -> Any:
    if not path.is_file():
        raise ConfigError(f"official checkpoint {path} does not exist; pass the path of a BALNMP .pth file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"{path} could not be loaded as a plain state dict (only tensors in dicts are unpickled, for safety); "
            f"if it is a trusted checkpoint holding other objects, re-save its model state dict with "
            f"torch.save(model.state_dict(), PATH). torch said: {first_line}"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise ConfigError(f"{path} is not a readable PyTorch checkpoint: {err}") from err


def _shape(head: Mapping[str, Tensor], key: str, ndim: int, source: str) -> tuple[int, ...]:
    shape = tuple(head[key].shape)
    if len(shape) != ndim:
        raise ConfigError(f"{source}: {key} has shape {list(shape)}, expected a {ndim}-d tensor of the BALNMP head")
    return shape


def _infer_dims(head: Mapping[str, Tensor], expand_times: int, source: str) -> tuple[int, int, int]:
    """(D, C, K) from the head weights; see the module docstring for the shapes."""
    hidden, in_dim = _shape(head, "attention_aggregator.fc1.0.weight", 2, source)
    cls_hidden, fused = _shape(head, "classifier.0.weight", 2, source)
    n_classes, out_hidden = _shape(head, "classifier.2.weight", 2, source)
    if hidden != 256 or cls_hidden != 64 or out_hidden != 64:
        raise ConfigError(
            f"{source}: layer sizes fc1={hidden}, classifier.0={cls_hidden}, classifier.2 input={out_hidden} "
            "do not match the BALNMP head (256, 64, 64); this is not an official BALNMP checkpoint"
        )
    extra = fused - 256
    if extra < 0 or extra % expand_times:
        raise ConfigError(
            f"{source}: classifier.0.weight has {fused} inputs; a BALNMP head has 256 + {expand_times}·K "
            f"(K clinical values tiled {expand_times} times), and {fused} - 256 = {extra} is not a "
            f"non-negative multiple of {expand_times}; pass the expand_times the checkpoint was trained with"
        )
    return in_dim, n_classes, extra // expand_times


def load_official_head(
    path_or_state_dict: str | Path | Mapping[str, Any], *, map_location: Any = "cpu", expand_times: int = 10
) -> BalnmpHead:
    """Build the ``balnmp`` head from an official BALNMP checkpoint.

    D, C and K are inferred from the weights: D from ``attention_aggregator.fc1.0.weight``
    ([256, D]; 25,088 for VGG16_BN), C from ``classifier.2.weight`` ([C, 64]) and K from
    ``classifier.0.weight`` ([64, 256 + 10K]; K = 0 means image-only). Backbone keys are ignored.

    Args:
        path_or_state_dict: a ``.pth`` path (a plain state dict, or one wrapped under "state_dict" or
            "model"; a ``module.`` prefix is stripped) or an already loaded mapping.
        map_location: passed to ``torch.load``; a device string or ``torch.device`` also moves the head there.
        expand_times: how often the official model tiled the clinical vector (10 in all official code).

    Returns:
        The head in eval mode with the checkpoint's weights (float32).

    Raises:
        ConfigError: the file is missing or unreadable, head keys are missing or unexpected (all are
            listed), or the shapes do not fit the BALNMP head.
    """
    if isinstance(expand_times, bool) or not isinstance(expand_times, int) or expand_times < 1:
        raise ConfigError(
            f"expand_times={expand_times!r} is invalid; it must be an integer >= 1 (10 in the official code)"
        )
    if isinstance(path_or_state_dict, (str, Path)):
        source = str(path_or_state_dict)
        raw = _read(Path(path_or_state_dict), map_location)
    else:
        source, raw = "the given state dict", path_or_state_dict
    head_sd, backbone_sd = split_official_state_dict(_unwrap(raw, source))
    missing = sorted(set(OFFICIAL_HEAD_KEYS) - set(head_sd))
    unexpected = sorted(set(head_sd) - set(OFFICIAL_HEAD_KEYS))
    if missing or unexpected:
        raise ConfigError(
            f"{source} is not an official BALNMP checkpoint: missing head keys {missing or 'none'}; "
            f"unexpected keys {unexpected or 'none'}; expected head keys: {', '.join(OFFICIAL_HEAD_KEYS)}"
        )
    in_dim, n_classes, clinical_dim = _infer_dims(head_sd, expand_times, source)
    head = BalnmpHead(in_dim=in_dim, n_classes=n_classes, clinical_dim=clinical_dim, expand_times=expand_times)
    try:
        head.load_state_dict(head_sd, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"{source}: head weights do not fit the BALNMP head: {err}") from err
    if isinstance(map_location, (str, torch.device)):
        head.to(map_location)
    logger.info(
        "loaded official BALNMP head from %s: D=%d, C=%d, clinical K=%d; ignored %d backbone tensors",
        source, in_dim, n_classes, clinical_dim, len(backbone_sd),
    )
    return head.eval()
