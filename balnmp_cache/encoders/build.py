"""``create_encoder``: a registered (or ``timm:`` / ``hf-hub:``) encoder built with its weights.

A built :class:`Encoder` is model + eval transform + identifier. The identifier changes whenever the
bytes of the features would: ``<name>:<mode>:<kind>:sha256=<weights digest, 12 hex>``, followed by
``:pre=<input>px,<interpolation>,crop<pct>,mean<...>,std<...>`` when the transform is not the official
one (bilinear resize, no crop) and by ``:kwargs=<canonical JSON>`` when model kwargs were given. The
registered CNNs (bilinear, no crop, no kwargs) keep the identifiers, and so the cache keys, they always had.

Encoders are built in eval mode with ``requires_grad_(False)``: BatchNorm uses its running
statistics. This deliberately departs from the official BALNMP code, which never called
``model.eval()`` and so normalised each bag of 10 patches with that bag's own batch statistics
(balnmp.md §4); per-patch features that depend on the other patches of a batch cannot be cached.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from balnmp_cache.encoders.registry import EncoderSpec, accepts, resolve_encoder
from balnmp_cache.errors import EncoderError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

__all__ = ["PUBLISHED_WEIGHTS", "Encoder", "create_encoder"]

log = logging.getLogger(__name__)

PUBLISHED_WEIGHTS: tuple[str, ...] = ("pretrained", "imagenet")
"""Synonyms for an encoder's published weights (ImageNet for the CNNs, the model's own for hub models)."""


@dataclass(frozen=True)
class Encoder:
    """A built encoder: model, eval transform and an identifier that changes whenever the features would.

    Attributes:
        name: registry name.
        mode: pooling mode (``avg``, ``max``, ``flatten`` for CNNs; ``cls``, ``mean_tokens``, ``cls+mean``).
        spec: the encoder's spec, preprocessing overrides applied.
        model: eval-mode module without gradients; (B, 3, input_px, input_px) normalised -> (B, feature_dim).
        feature_dim: D.
        weights: ``"imagenet"``, ``"random"``, or the weights file (a hub snapshot's or the one given).
        weights_sha256: digest of the loaded weights: the weights file's SHA-256, or for ImageNet and random
            weights a canonical digest of the module's state dict (see ``weights.state_dict_sha256``).
        identifier: see the module docstring.
        random_weights: True for ``weights="random"``.
        channels_last: whether the model and :meth:`preprocess` use ``torch.channels_last``.
    """

    name: str
    mode: str
    spec: EncoderSpec
    model: nn.Module = field(repr=False)
    feature_dim: int
    weights: str
    weights_sha256: str
    identifier: str
    random_weights: bool
    channels_last: bool = False

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        import torch

        first = next(self.model.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    def preprocess(self, patches: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(B, h, w, 3) uint8 RGB -> (B, 3, input_px, input_px) float32, normalised, on the model's device.

        Antialiased resize with the spec's interpolation (and centre crop), matching PIL's (for the CNNs the
        official ``Resize((224, 224))`` + ``ToTensor`` + ``Normalize``; see ``pooling.preprocess_patches``).
        """
        from balnmp_cache.encoders.pooling import preprocess_patches

        spec = self.spec
        return preprocess_patches(
            patches, input_px=spec.input_px, mean=spec.mean, std=spec.std, interpolation=spec.interpolation,
            crop_pct=spec.crop_pct, device=self.device, channels_last=self.channels_last,
        )

    def to(self, device: str | torch.device, *, channels_last: bool = False) -> Encoder:
        """Move the model (in place: this Encoder's ``model`` moves too) and return an Encoder recording it.

        Raises:
            EncoderError: the device is not usable here.
        """
        import torch

        try:
            self.model.to(torch.device(device))
        except (RuntimeError, AssertionError) as err:
            raise EncoderError(
                f"cannot move encoder '{self.name}' to device {device!r} ({err}); pass --device cpu or a usable device"
            ) from err
        self.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        return replace(self, channels_last=channels_last)


def _check_mode(spec: EncoderSpec, mode: str | None) -> str:
    mode = spec.default_mode if mode is None else mode
    if mode not in spec.modes:
        raise EncoderError(
            f"encoder '{spec.name}' does not support mode '{mode}'; its modes (--mode / key 'mode') are: "
            f"{', '.join(spec.modes)} (default {spec.default_mode})"
        )
    return mode


def _weights(spec: EncoderSpec, weights: str | Path, revision: str | None) -> tuple[str, Path | None]:
    """(kind, file): ``imagenet`` / ``random`` (no file), ``pretrained`` (a hub snapshot's file), ``checkpoint``."""
    from balnmp_cache.encoders import hub

    if revision is not None and not spec.hub_id:
        raise EncoderError(
            f"encoder '{spec.name}' has no Hugging Face weights, so --encoder-revision {revision} does not apply; "
            "drop it (key 'encoder_revision')"
        )
    if isinstance(weights, str) and weights == "random":
        return "random", None
    if isinstance(weights, str) and weights in PUBLISHED_WEIGHTS:
        if not spec.hub_id:
            return "imagenet", None
        found = hub.find_weights(spec.hub_id, revision)
        if found is None:
            raise EncoderError(hub.missing_weights(spec.hub_id, revision, model=spec.name, gated=spec.gated))
        return "pretrained", found.path
    path = Path(weights)
    if path.is_file():
        return "checkpoint", path
    raise EncoderError(
        f"weights {str(weights)!r} are neither 'pretrained' (or 'imagenet'), 'random' nor an existing checkpoint "
        "file; pass --weights pretrained, --weights random or --weights PATH"
    )


def _tags(spec: EncoderSpec, kwargs: Mapping[str, Any]) -> str:
    """The identifier's preprocessing and kwargs suffixes (empty for the official transform, no kwargs)."""
    tags = ""
    if not spec.legacy_transform:
        numbers = "/".join

        tags += (
            f":pre={spec.input_px}px,{spec.interpolation},crop{spec.crop_pct:g},"
            f"mean{numbers(f'{v:g}' for v in spec.mean)},std{numbers(f'{v:g}' for v in spec.std)}"
        )
    if kwargs:
        tags += ":kwargs=" + json.dumps(dict(kwargs), sort_keys=True, separators=(",", ":"), default=str)
    return tags


def create_encoder(
    name: str,
    *,
    mode: str | None = None,
    weights: str | Path = "pretrained",
    seed: int = 0,
    device: str = "cpu",
    revision: str | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> Encoder:
    """Build encoder ``name`` with its pooling ``mode`` and ``weights``, in eval mode on ``device``.

    Args:
        name: a registered name (see ``list_encoders``), ``timm:<model_name>`` or ``hf-hub:ORG/NAME``.
        mode: one of the spec's modes; ``None`` for the spec's default.
        weights: ``"pretrained"`` (or its synonym ``"imagenet"``): the published weights: torchvision's from
            the torch hub cache, EfficientNet-Lite0's package, a hub model's from the local Hugging Face cache
            (never downloaded); ``"random"`` (seeded initialisation, a baseline); or a checkpoint path
            (a state dict, ``.safetensors`` or a torch file, loaded strictly).
        seed: seed of the initialisation; it decides ``"random"`` weights. Construction never changes the
            caller's global random state (see ``weights.seeded``).
        device: where the model runs.
        revision: the Hugging Face revision (ref or commit) of a hub model's snapshot.
        kwargs: model keyword arguments (``encoder_kwargs``), plus ``pretrained_cfg_overlay`` to override
            the preprocessing (``input_size``, ``interpolation``, ``crop_pct``, ``mean``, ``std``).

    Raises:
        EncoderError: unknown name or mode, missing weights (the message says how to get them), unreadable or
            mismatched checkpoint, unusable device.
    """
    from balnmp_cache.encoders import hub
    from balnmp_cache.encoders.pooling import PooledEncoder
    from balnmp_cache.encoders.weights import load_checkpoint, seeded, state_dict_sha256

    kwargs = dict(kwargs or {})
    spec, builder = resolve_encoder(name, revision=revision, kwargs=kwargs)
    mode = _check_mode(spec, mode)
    kind, path = _weights(spec, weights, revision)
    if accepts(builder, "snapshot"):
        builder = partial(builder, snapshot=path.parent if kind == "pretrained" and path is not None else None)
    with seeded(seed), hub.offline():
        trunk = builder(kind == "imagenet")
    digest = load_checkpoint(trunk, path, encoder=name) if path is not None else state_dict_sha256(trunk.state_dict())
    label = spec.weights_label if kind in ("imagenet", "pretrained") else kind
    encoder = Encoder(
        name=name,
        mode=mode,
        spec=spec,
        model=PooledEncoder(trunk, mode).eval().requires_grad_(False),
        feature_dim=spec.feature_dim(mode),
        weights=str(path) if kind == "pretrained" else ("imagenet" if kind == "imagenet" else str(weights)),
        weights_sha256=digest,
        identifier=f"{name}:{mode}:{label}:sha256={digest[:12]}{_tags(spec, kwargs)}",
        random_weights=kind == "random",
    )
    log.info("built encoder %s (%d-d)", encoder.identifier, encoder.feature_dim)
    return encoder.to(device)
