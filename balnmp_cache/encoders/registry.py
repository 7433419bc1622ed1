"""The encoder registry: specs keyed by name, builders behind a decorator, and ``create_encoder``.

Adding an encoder is one builder function and one decorator::

    @register_encoder(EncoderSpec(name="my_cnn", input_px=224, mean=..., std=..., channels=512,
                                  flatten_dim=None, modes=("avg", "max"), default_mode="avg",
                                  weights_source="..."))
    def my_cnn(pretrained: bool) -> nn.Module:   # returns the final feature MAP (B, C, h, w)
        ...

A builder's module may define ``adapt_state_dict(state_dict) -> state_dict`` to translate foreign
checkpoint layouts (full classifier models, official BALNMP checkpoints) into its own keys before the
strict load of ``--weights PATH``.

Encoders are built in eval mode with ``requires_grad_(False)``: BatchNorm uses its running
statistics. This deliberately departs from the official BALNMP code, which never called
``model.eval()`` and so normalised each bag of 10 patches with that bag's own batch statistics
(balnmp.md §4); per-patch features that depend on the other patches of a batch cannot be cached.

This module imports torch only inside functions, so listing encoders stays cheap.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from balnmp_cache.errors import EncoderError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

__all__ = [
    "Encoder",
    "EncoderSpec",
    "WeightsAvailability",
    "create_encoder",
    "get_spec",
    "list_encoders",
    "register_encoder",
    "weights_status",
]

log = logging.getLogger(__name__)

Builder = Callable[[bool], "nn.Module"]
ALL_MODES: tuple[str, ...] = ("avg", "max", "flatten")
SPECIAL_WEIGHTS: tuple[str, ...] = ("imagenet", "random")


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder needs and gives, independent of its weights.

    Attributes:
        name: registry key (``--encoder``).
        input_px: side of the square model input in pixels (patches are resized to it).
        mean, std: per-channel RGB normalisation on the [0, 1] scale.
        channels: channels C of the final feature map, the dimension of modes ``avg`` and ``max``.
        flatten_dim: dimension of mode ``flatten`` (C*h*w at ``input_px``), ``None`` if unsupported.
        modes: supported modes, a subset of ``("avg", "max", "flatten")``.
        default_mode: the mode used when none is given.
        weights_source: human-readable origin of the ImageNet weights.
    """

    name: str
    input_px: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channels: int
    flatten_dim: int | None
    modes: tuple[str, ...]
    default_mode: str
    weights_source: str

    def __post_init__(self) -> None:
        if not set(self.modes) <= set(ALL_MODES) or self.default_mode not in self.modes:
            raise ValueError(
                f"encoder {self.name!r}: modes {self.modes} must be a subset of {ALL_MODES} "
                f"containing {self.default_mode!r}"
            )
        if ("flatten" in self.modes) != (self.flatten_dim is not None):
            raise ValueError(
                f"encoder {self.name!r}: flatten_dim must be given exactly when mode 'flatten' is supported"
            )

    def feature_dim(self, mode: str) -> int:
        """Output dimension D of ``mode``."""
        return int(self.flatten_dim) if mode == "flatten" else self.channels  # type: ignore[arg-type]


class WeightsAvailability(NamedTuple):
    """Whether ImageNet weights can be loaded offline; ``detail`` is where they are, or how to provide them."""

    available: bool
    detail: str


@dataclass(frozen=True)
class _Entry:
    spec: EncoderSpec
    builder: Builder
    locate_weights: Callable[[], WeightsAvailability] | None


_REGISTRY: dict[str, _Entry] = {}


def register_encoder(
    spec: EncoderSpec, *, locate_weights: Callable[[], WeightsAvailability] | None = None
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(pretrained: bool) -> nn.Module`` (returning a feature map) under ``spec.name``.

    Args:
        spec: the encoder's spec.
        locate_weights: reports whether the ImageNet weights are on disk (for :func:`weights_status`);
            it must not download anything.

    Raises:
        ValueError: the name is taken or uses the reserved ``timm:`` prefix.
    """
    from balnmp_cache.encoders.timm_hook import TIMM_PREFIX

    if spec.name in _REGISTRY or spec.name.startswith(TIMM_PREFIX):
        raise ValueError(f"encoder name {spec.name!r} is already registered or reserved")

    def decorator(builder: Builder) -> Builder:
        _REGISTRY[spec.name] = _Entry(spec, builder, locate_weights)
        return builder

    return decorator


def list_encoders() -> list[str]:
    """Names of the registered encoders, sorted (``timm:<model_name>`` is accepted besides these)."""
    return sorted(_REGISTRY)


def _unknown(name: str) -> EncoderError:
    names = list_encoders()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return EncoderError(
        f"unknown encoder '{name}'{hint} Valid encoders (--encoder / key 'encoder') are: {', '.join(names)}, "
        "or timm:<model_name> with timm installed"
    )


def _entry(name: str) -> tuple[EncoderSpec, Builder]:
    from balnmp_cache.encoders.timm_hook import TIMM_PREFIX, timm_entry

    if name.startswith(TIMM_PREFIX):
        return timm_entry(name)
    if name not in _REGISTRY:
        raise _unknown(name)
    entry = _REGISTRY[name]
    return entry.spec, entry.builder


def get_spec(name: str) -> EncoderSpec:
    """The spec of encoder ``name`` (registered, or ``timm:<model_name>``).

    Raises:
        EncoderError: unknown name (the message lists the registered names and the closest match).
    """
    return _entry(name)[0]


@dataclass(frozen=True)
class Encoder:
    """A built encoder: model, eval transform and an identifier that changes whenever the weights do.

    Attributes:
        name: registry name.
        mode: pooling mode of the feature map (``avg``, ``max`` or ``flatten``).
        spec: the encoder's spec.
        model: eval-mode module without gradients; (B, 3, input_px, input_px) normalised -> (B, feature_dim).
        feature_dim: D.
        weights: ``"imagenet"``, ``"random"`` or the checkpoint path as given.
        weights_sha256: digest of the loaded weights: the checkpoint file's SHA-256, or for ImageNet and
            random weights a canonical digest of the module's state dict (see ``weights.state_dict_sha256``).
        identifier: ``<name>:<mode>:<imagenet|random|checkpoint>:sha256=<first 12 hex>``.
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

        Bilinear resize with antialiasing, matching the official PIL ``Resize((224, 224))`` + ``ToTensor`` +
        ``Normalize`` closely (see ``pooling.preprocess_patches``).
        """
        from balnmp_cache.encoders.pooling import preprocess_patches

        return preprocess_patches(
            patches,
            input_px=self.spec.input_px,
            mean=self.spec.mean,
            std=self.spec.std,
            device=self.device,
            channels_last=self.channels_last,
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


def _weights_kind(weights: str | Path) -> str:
    if isinstance(weights, str) and weights in SPECIAL_WEIGHTS:
        return weights
    path = Path(weights)
    if path.is_file():
        return "checkpoint"
    raise EncoderError(
        f"weights {str(weights)!r} are neither 'imagenet', 'random' nor an existing checkpoint file; "
        "pass --weights imagenet, --weights random or --weights PATH"
    )


def create_encoder(
    name: str,
    *,
    mode: str | None = None,
    weights: str | Path = "imagenet",
    seed: int = 0,
    device: str = "cpu",
) -> Encoder:
    """Build encoder ``name`` with its pooling ``mode`` and ``weights``, in eval mode on ``device``.

    Args:
        name: a registered name (see :func:`list_encoders`) or ``timm:<model_name>``.
        mode: ``avg``, ``max`` or ``flatten`` as the spec supports; ``None`` for the spec's default.
        weights: ``"imagenet"`` (the torch hub cache or a package; downloaded when missing and the
            host answers), ``"random"`` (seeded initialisation, a baseline) or a checkpoint path (state dict
            of the builder's module).
        seed: seed of the initialisation; it decides ``"random"`` weights. Construction never changes the
            caller's global random state (see ``weights.seeded``).
        device: where the model runs.

    Raises:
        EncoderError: unknown name or mode, unavailable ImageNet weights, unreadable or mismatched checkpoint,
            unusable device.
    """
    from balnmp_cache.encoders.pooling import PooledEncoder
    from balnmp_cache.encoders.weights import load_checkpoint, seeded, state_dict_sha256

    spec, builder = _entry(name)
    mode = _check_mode(spec, mode)
    kind = _weights_kind(weights)
    with seeded(seed):
        trunk = builder(kind == "imagenet")
    if kind == "checkpoint":
        digest = load_checkpoint(trunk, Path(weights), encoder=name)
    else:
        digest = state_dict_sha256(trunk.state_dict())
    model = PooledEncoder(trunk, mode).eval().requires_grad_(False)
    encoder = Encoder(
        name=name,
        mode=mode,
        spec=spec,
        model=model,
        feature_dim=spec.feature_dim(mode),
        weights=str(weights),
        weights_sha256=digest,
        identifier=f"{name}:{mode}:{kind}:sha256={digest[:12]}",
        random_weights=kind == "random",
    )
    log.info("built encoder %s (%d-d)", encoder.identifier, encoder.feature_dim)
    return encoder.to(device)


def weights_status() -> dict[str, str]:
    """Encoder name -> ``"available offline (<where>)"`` or ``"missing: <how to provide>"``; never downloads.

    ``timm:*`` reports whether the optional timm package is installed (its per-model weights are not checked).
    """
    status: dict[str, str] = {}
    for name in list_encoders():
        locate = _REGISTRY[name].locate_weights
        if locate is None:
            status[name] = f"unknown ({_REGISTRY[name].spec.weights_source})"
            continue
        found = locate()
        status[name] = f"available offline ({found.detail})" if found.available else f"missing: {found.detail}"
    try:
        import timm
    except ImportError:
        from balnmp_cache.encoders.timm_hook import INSTALL_HINT

        status["timm:*"] = f"missing: timm is not installed; run `{INSTALL_HINT}`"
    else:
        status["timm:*"] = (
            f"available (timm {timm.__version__} installed; each model's pretrained weights come from the "
            "Hugging Face cache and are not checked)"
        )
    return status
