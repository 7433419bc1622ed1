"""The encoder registry: specs keyed by name, builders behind a decorator, and name resolution.

Adding an encoder is one builder function and one decorator::

    @register_encoder(EncoderSpec(name="my_cnn", input_px=224, mean=..., std=..., channels=512,
                                  flatten_dim=None, modes=("avg", "max"), default_mode="avg",
                                  weights_source="..."))
    def my_cnn(pretrained: bool) -> nn.Module:   # returns the final feature MAP (B, C, h, w)
        ...

A transformer returns its token sequence (B, N, C) instead, declares the token modes (``cls``,
``mean_tokens``, ``cls+mean``) and, when its weights live on the Hugging Face hub, the repo id
(``hub_id``, read from the local cache only, see :mod:`~balnmp_cache.encoders.hub`) and the resolution it was
trained at (``mpp``); see :mod:`~balnmp_cache.encoders.foundation`. A builder that takes ``**kwargs`` accepts
model keyword arguments from the configuration (``encoder_kwargs``); one with a ``snapshot`` parameter gets the
local snapshot folder its weights come from.

A builder's module may define ``adapt_state_dict(state_dict) -> state_dict`` to translate foreign
checkpoint layouts (full classifier models, official BALNMP checkpoints) into its own keys before the
strict load of the weights. :func:`~balnmp_cache.encoders.build.create_encoder` builds an encoder.

This module imports torch only inside functions, so listing encoders stays cheap.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from balnmp_cache.errors import EncoderError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "CNN_MODES",
    "HUB_PREFIX",
    "INTERPOLATIONS",
    "TIMM_PREFIX",
    "TOKEN_MODES",
    "EncoderSpec",
    "WeightsAvailability",
    "get_spec",
    "list_encoders",
    "register_encoder",
    "resolve_encoder",
    "weights_availability",
    "weights_status",
]

log = logging.getLogger(__name__)

Builder = Callable[..., "nn.Module"]
CNN_MODES: tuple[str, ...] = ("avg", "max", "flatten")
TOKEN_MODES: tuple[str, ...] = ("cls", "mean_tokens", "cls+mean")
INTERPOLATIONS: tuple[str, ...] = ("bilinear", "bicubic")
TIMM_PREFIX = "timm:"
HUB_PREFIX = "hf-hub:"
_OVERLAY_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std")


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder needs and gives, independent of its weights.

    Attributes:
        name: registry key (``--encoder``).
        input_px: side of the square model input in pixels (patches are resized to it).
        mean, std: per-channel RGB normalisation on the [0, 1] scale.
        channels: channels C of the final feature map or token width; the dimension of every mode but
            ``flatten`` (C*h*w) and ``cls+mean`` (2C).
        flatten_dim: dimension of mode ``flatten`` (C*h*w at ``input_px``), ``None`` if unsupported.
        modes: supported modes, a subset of :data:`CNN_MODES` (feature maps) or of :data:`TOKEN_MODES` (tokens).
        default_mode: the mode used when none is given.
        weights_source: human-readable origin of the published weights.
        interpolation: resize filter, ``bilinear`` (the official BALNMP transform) or ``bicubic``.
        crop_pct: share of the resized patch kept by a centre crop (timm's ``crop_pct``; 1 = no crop).
        mpp: µm per pixel of the model's training input; extract reads patches at it unless
            ``--target-mpp`` / ``--magnification`` say otherwise. ``None``: native resolution.
        hub_id: Hugging Face repo id of the published weights (``ORG/NAME``), read from the local cache.
        gated: the repo asks users to accept a licence before downloading.
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
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    mpp: float | None = None
    hub_id: str | None = None
    gated: bool = False

    def __post_init__(self) -> None:
        family = CNN_MODES if set(self.modes) <= set(CNN_MODES) else TOKEN_MODES
        if not set(self.modes) <= set(family) or self.default_mode not in self.modes:
            raise ValueError(
                f"encoder {self.name!r}: modes {self.modes} must be a subset of {CNN_MODES} (feature maps) or "
                f"of {TOKEN_MODES} (tokens) containing {self.default_mode!r}"
            )
        if ("flatten" in self.modes) != (self.flatten_dim is not None):
            raise ValueError(
                f"encoder {self.name!r}: flatten_dim must be given exactly when mode 'flatten' is supported"
            )
        if self.interpolation not in INTERPOLATIONS or not 0 < self.crop_pct <= 1:
            raise ValueError(
                f"encoder {self.name!r}: interpolation must be one of {INTERPOLATIONS} and crop_pct in (0, 1], "
                f"got {self.interpolation!r} and {self.crop_pct!r}"
            )
        if self.mpp is not None and not self.mpp > 0:
            raise ValueError(f"encoder {self.name!r}: mpp must be positive or None, got {self.mpp!r}")

    def feature_dim(self, mode: str) -> int:
        """Output dimension D of ``mode``."""
        if mode == "flatten":
            return int(self.flatten_dim)  # type: ignore[arg-type]
        return 2 * self.channels if mode == "cls+mean" else self.channels

    @property
    def weights_label(self) -> str:
        """How the published weights are recorded: ``pretrained`` (hub weights) or ``imagenet``."""
        return "pretrained" if self.hub_id else "imagenet"

    @property
    def legacy_transform(self) -> bool:
        """Whether the transform is the official one (bilinear, no crop), whose identifiers carry no tag."""
        return self.interpolation == "bilinear" and self.crop_pct == 1.0

    def overlaid(self, overlay: Mapping[str, Any]) -> EncoderSpec:
        """This spec with preprocessing replaced by a timm ``pretrained_cfg_overlay`` table.

        Raises:
            EncoderError: an unknown key or an unusable value.
        """
        unknown = sorted(set(overlay) - set(_OVERLAY_KEYS))
        if unknown or overlay.get("crop_mode", "center") not in ("center", "squash"):
            raise EncoderError(
                f"encoder '{self.name}': encoder_kwargs.pretrained_cfg_overlay accepts {', '.join(_OVERLAY_KEYS)} "
                f"(crop_mode 'center' or 'squash'), got {dict(overlay)!r}; fix key 'encoder_kwargs'"
            )
        changes: dict[str, Any] = {}
        if "input_size" in overlay:
            changes["input_px"] = int(list(overlay["input_size"])[-1])
        for key in ("interpolation", "crop_pct"):
            if key in overlay:
                changes[key] = overlay[key] if key == "interpolation" else float(overlay[key])
        if overlay.get("crop_mode") == "squash":
            changes["crop_pct"] = 1.0
        for key in ("mean", "std"):
            if key in overlay:
                changes[key] = tuple(float(v) for v in overlay[key])
        try:
            return replace(self, **changes)
        except (ValueError, TypeError) as err:
            raise EncoderError(f"{err}; fix key 'encoder_kwargs.pretrained_cfg_overlay'") from err


class WeightsAvailability(NamedTuple):
    """Whether the published weights can be loaded offline.

    ``detail`` is where they are, or where they were looked for; ``fix`` how to get them (when empty, a
    missing entry's ``detail`` says it).
    """

    available: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class _Entry:
    spec: EncoderSpec
    builder: Builder
    locate_weights: Callable[[], WeightsAvailability] | None


_REGISTRY: dict[str, _Entry] = {}


def _hub_locator(spec: EncoderSpec) -> Callable[[], WeightsAvailability]:
    def locate() -> WeightsAvailability:
        from balnmp_cache.encoders import hub

        found = hub.find_weights(str(spec.hub_id))
        if found is not None:
            return WeightsAvailability(True, str(found.path))
        expected = hub.expected_weights(str(spec.hub_id), None)
        return WeightsAvailability(False, f"expected {expected}", hub.how_to_get(str(spec.hub_id), gated=spec.gated))

    return locate


def register_encoder(
    spec: EncoderSpec, *, locate_weights: Callable[[], WeightsAvailability] | None = None
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(pretrained: bool, ...) -> nn.Module`` under ``spec.name``.

    Args:
        spec: the encoder's spec.
        locate_weights: reports whether the published weights are on disk (for :func:`weights_status`); it
            must not download anything. Default for a spec with ``hub_id``: a look into the local hub cache.

    Raises:
        ValueError: the name is taken or uses a reserved prefix (``timm:``, ``hf-hub:``).
    """
    if spec.name in _REGISTRY or spec.name.startswith((TIMM_PREFIX, HUB_PREFIX)):
        raise ValueError(f"encoder name {spec.name!r} is already registered or reserved")
    if locate_weights is None and spec.hub_id:
        locate_weights = _hub_locator(spec)

    def decorator(builder: Builder) -> Builder:
        _REGISTRY[spec.name] = _Entry(spec, builder, locate_weights)
        return builder

    return decorator


def list_encoders() -> list[str]:
    """Names of the registered encoders, sorted (``timm:NAME`` and ``hf-hub:ORG/NAME`` are accepted besides)."""
    return sorted(_REGISTRY)


def _unknown(name: str) -> EncoderError:
    names = list_encoders()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return EncoderError(
        f"unknown encoder '{name}'{hint} Valid encoders (--encoder / key 'encoder') are: {', '.join(names)}, "
        "timm:<model_name> or hf-hub:ORG/NAME (a timm model in the local Hugging Face cache)"
    )


def accepts(builder: Callable[..., Any], parameter: str) -> bool:
    """Whether ``builder`` takes keyword ``parameter`` (``"kwargs"``: any keyword, through ``**kwargs``)."""
    params = inspect.signature(builder).parameters.values()
    if parameter == "kwargs":
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    return any(p.name == parameter for p in params)


def resolve_encoder(
    name: str, *, revision: str | None = None, kwargs: Mapping[str, Any] | None = None
) -> tuple[EncoderSpec, Builder]:
    """The spec (preprocessing overrides applied) and builder of ``name``, with its model kwargs bound.

    Raises:
        EncoderError: unknown name, kwargs for an encoder that takes none, a bad preprocessing override.
    """
    kwargs = dict(kwargs or {})
    if name.startswith((TIMM_PREFIX, HUB_PREFIX)):
        from balnmp_cache.encoders.timm_hook import timm_entry

        return timm_entry(name, revision=revision, kwargs=kwargs)
    if name not in _REGISTRY:
        raise _unknown(name)
    entry = _REGISTRY[name]
    overlay = kwargs.pop("pretrained_cfg_overlay", None)
    spec = entry.spec.overlaid(overlay) if overlay else entry.spec
    if kwargs and not accepts(entry.builder, "kwargs"):
        raise EncoderError(
            f"encoder '{name}' takes no model kwargs (got {', '.join(sorted(kwargs))}); remove them from key "
            "'encoder_kwargs' (only pretrained_cfg_overlay applies to every encoder)"
        )
    return spec, partial(entry.builder, **kwargs) if kwargs else entry.builder


def get_spec(name: str, *, revision: str | None = None, kwargs: Mapping[str, Any] | None = None) -> EncoderSpec:
    """The spec of encoder ``name`` (registered, ``timm:NAME`` or ``hf-hub:ORG/NAME``).

    Raises:
        EncoderError: unknown name (the message lists the registered names and the closest match).
    """
    return resolve_encoder(name, revision=revision, kwargs=kwargs)[0]


def registered_mpp(name: str) -> float | None:
    """The training µm/px of a registered encoder, ``None`` for any other name; never imports torch."""
    entry = _REGISTRY.get(name)
    return entry.spec.mpp if entry is not None else None


def weights_availability() -> dict[str, WeightsAvailability | None]:
    """Registered encoder name -> where its published weights are or were looked for (``None``: not known).

    Nothing is downloaded; ``timm:`` / ``hf-hub:`` names are not listed (see :func:`weights_status`).
    """
    return {name: locate() if (locate := _REGISTRY[name].locate_weights) else None for name in list_encoders()}


def weights_status() -> dict[str, str]:
    """Encoder name -> ``"available offline (<where>)"`` or ``"missing: <how to get them>"``; never downloads.

    ``timm:*`` / ``hf-hub:*`` report the installed timm and the hub cache they read (weights per model are not
    checked).
    """
    status: dict[str, str] = {}
    for name, found in weights_availability().items():
        if found is None:
            status[name] = f"unknown ({_REGISTRY[name].spec.weights_source})"
        elif found.available:
            status[name] = f"available offline ({found.detail})"
        else:
            how = f"weights of {name} not found: {found.detail}; {found.fix}" if found.fix else found.detail
            status[name] = f"missing: {how}"
    from balnmp_cache.encoders.hub import hub_cache_dir
    from balnmp_cache.encoders.timm_hook import INSTALL_HINT

    try:
        import timm
    except ImportError:
        status["timm:* / hf-hub:*"] = f"missing: timm is not installed; run `{INSTALL_HINT}`"
    else:
        status["timm:* / hf-hub:*"] = (
            f"available (timm {timm.__version__}; weights are read from the Hugging Face cache {hub_cache_dir()} "
            "and are not checked here)"
        )
    return status
