"""timm models as encoders: ``timm:<model_name>``, ``hf-hub:ORG/NAME`` and the trunk the foundation models use.

* ``timm:<model_name>``: a timm architecture (``timm.list_models()``); its published weights are the
  Hugging Face repo its ``pretrained_cfg`` names (``hf_hub_id``, e.g. ``timm/resnet18.a1_in1k``), read from
  the local cache.
* ``hf-hub:ORG/NAME``: a timm model published on the hub. Its ``config.json`` (architecture, model args,
  ``pretrained_cfg``) and weights are read from the local cache snapshot (``--encoder-revision`` picks it);
  the model is built with timm's ``local-dir:`` source, which reads that ``config.json`` and nothing else.

Either is built with ``num_classes=0`` and the configuration's ``encoder_kwargs``, then the weights file is
loaded strictly (classifier keys dropped). The transform comes from the model's ``pretrained_cfg`` through
``timm.data.resolve_data_config`` (input size, interpolation, ``crop_pct``, mean, std), after any
``pretrained_cfg_overlay`` in the kwargs. Modes follow what ``forward_features`` returns, found by a pass on
the ``meta`` device: a feature map (B, C, h, w) gives ``avg``/``max``/``flatten``; tokens (B, N, C) give
``cls`` (when the model has a class token), ``mean_tokens`` and ``cls+mean``.
"""

from __future__ import annotations

import difflib
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from balnmp_cache.encoders.registry import CNN_MODES, HUB_PREFIX, INTERPOLATIONS, TIMM_PREFIX, TOKEN_MODES
from balnmp_cache.errors import EncoderError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from balnmp_cache.encoders.registry import EncoderSpec

__all__ = ["INSTALL_HINT", "import_timm", "timm_entry", "timm_trunk", "wrap_timm"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'timm>=1.0.31' (make install installs it)"


def import_timm(name: str) -> Any:
    """Import timm, or raise an EncoderError with the install hint."""
    try:
        import timm
    except ImportError as err:
        raise EncoderError(
            f"encoder '{name}' needs timm, which is not installed; run `{INSTALL_HINT}` "
            "or change --encoder to a built-in CNN"
        ) from err
    return timm


@functools.cache
def _trunk_class() -> type:
    from torch import nn

    class TimmTrunk(nn.Module):
        """A timm model built with ``num_classes=0``: (B, 3, H, W) -> ``forward_features``.

        That is the final feature map (B, C, h, w) of a CNN (NHWC outputs are permuted) or the token
        sequence (B, N, C) of a transformer, after its final norm.
        """

        def __init__(self, model: nn.Module, classifier: str | None = "head"):
            super().__init__()
            self.model: Any = model  # a timm model: forward_features, num_prefix_tokens, fc_norm
            self.classifier = classifier

        @property
        def num_prefix_tokens(self) -> int:
            """Class and register tokens before the patch tokens."""
            return int(getattr(self.model, "num_prefix_tokens", 0))

        @property
        def pool_norm(self) -> nn.Module | None:
            """timm's ``fc_norm``: the norm some models apply after pooling instead of before."""
            return getattr(self.model, "fc_norm", None)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.model.forward_features(x)
            if out.ndim == 4 and getattr(self.model, "output_fmt", "NCHW") == "NHWC":
                out = out.permute(0, 3, 1, 2)  # (B, C, h, w)
            return out

        def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            """Accept the bare timm model's keys (dropping its classifier) as well as this wrapper's."""
            if all(key.startswith("model.") for key in state_dict):
                return state_dict
            heads = tuple(f"{c}." for c in ([self.classifier] if isinstance(self.classifier, str) else
                                            self.classifier or ()))
            return {f"model.{k}": v for k, v in state_dict.items() if not (heads and k.startswith(heads))}

    return TimmTrunk


def wrap_timm(model: nn.Module, classifier: str | None = "head") -> nn.Module:
    """A timm model as a trunk: ``forward`` is its ``forward_features`` (see ``TimmTrunk`` in ``_trunk_class``)."""
    return _trunk_class()(model, classifier)


def timm_trunk(architecture: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(architecture, pretrained=False, **kwargs)`` as a trunk; weights are loaded afterwards."""
    timm = import_timm(architecture)
    return wrap_timm(timm.create_model(architecture, pretrained=False, **kwargs), "head")


def _rgb(values: Iterable[float]) -> tuple[float, float, float]:
    """One value per RGB channel (a timm ``pretrained_cfg`` mean or std) as floats."""
    red, green, blue = (float(v) for v in values)
    return red, green, blue


def _model_name(timm: Any, name: str, revision: str | None) -> tuple[str, str | None]:
    """(what timm.create_model takes, the repo id when ``name`` is ``hf-hub:``)."""
    from balnmp_cache.encoders import hub

    if name.startswith(HUB_PREFIX):
        repo_id = name[len(HUB_PREFIX) :]
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise EncoderError(
                f"'{repo_id}' is not a Hugging Face repo id ORG/NAME; use --encoder {HUB_PREFIX}ORG/NAME"
            )
        found = hub.find_config(repo_id, revision)
        if found is None:
            raise EncoderError(hub.missing_config(repo_id, revision, model=name, gated=False))
        return f"local-dir:{found.snapshot}", repo_id
    model_name = name[len(TIMM_PREFIX) :]
    if model_name.startswith(("hf-hub:", "hf_hub:")):
        raise EncoderError(f"use --encoder {HUB_PREFIX}{model_name.split(':', 1)[1]} (not {name}) for a hub model")
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise EncoderError(
            f"timm has no model '{model_name}' (from --encoder {name}){hint} See timm.list_models() for the valid "
            f"names, or use --encoder {HUB_PREFIX}ORG/NAME for a model in the Hugging Face cache."
        )
    return model_name, None


def _transform(name: str, probe: nn.Module) -> dict[str, Any]:
    """input_px, interpolation, crop_pct, mean, std from the model's pretrained_cfg (timm's resolution)."""
    from timm.data.config import resolve_data_config

    cfg = resolve_data_config(model=probe)
    crop_pct = 1.0 if cfg.get("crop_mode", "center") == "squash" else float(cfg.get("crop_pct") or 1.0)
    if cfg.get("interpolation") not in INTERPOLATIONS or cfg.get("crop_mode", "center") not in ("center", "squash"):
        raise EncoderError(
            f"encoder '{name}': pretrained_cfg interpolation {cfg.get('interpolation')!r} / crop_mode "
            f"{cfg.get('crop_mode')!r} is not supported (interpolation {', '.join(INTERPOLATIONS)}, crop_mode center "
            "or squash); override it in key 'encoder_kwargs' with pretrained_cfg_overlay = {interpolation = 'bicubic'}"
        )
    return dict(input_px=int(cfg["input_size"][-1]), interpolation=cfg["interpolation"], crop_pct=min(crop_pct, 1.0),
                mean=_rgb(cfg["mean"]), std=_rgb(cfg["std"]))


def _output(probe: nn.Module, input_px: int) -> tuple[int, int, tuple[int, ...]]:
    """(ndim, C, shape) of ``forward_features`` on the meta device (tokens assumed when it cannot run there)."""
    import torch

    try:
        with torch.device("meta"):
            out = wrap_timm(probe)(torch.empty(1, 3, input_px, input_px))
        channels = int(out.shape[1] if out.ndim == 4 else out.shape[-1])
        return int(out.ndim), channels, tuple(int(v) for v in out.shape)
    except Exception:  # some models do not run on the meta device
        channels = int(getattr(probe, "num_features", 0) or getattr(probe, "head_hidden_size", 0))
        return (3 if hasattr(probe, "num_prefix_tokens") else 4), channels, ()


def _modes(probe: nn.Module, ndim: int) -> tuple[tuple[str, ...], str]:
    if ndim == 4:
        return CNN_MODES, "avg"
    if getattr(probe, "cls_token", None) is None:
        return ("mean_tokens",), "mean_tokens"
    return TOKEN_MODES, "mean_tokens" if getattr(probe, "global_pool", "token") == "avg" else "cls"


def timm_entry(
    name: str, *, revision: str | None = None, kwargs: Mapping[str, Any] | None = None
) -> tuple[EncoderSpec, Callable[[bool], nn.Module]]:
    """The spec and builder of ``timm:<model_name>`` or ``hf-hub:ORG/NAME`` (model kwargs bound).

    Raises:
        EncoderError: timm is missing, the model name is unknown to timm (with close matches), the hub model's
            ``config.json`` is not in the local cache, or its preprocessing is not supported.
    """
    import torch

    from balnmp_cache.encoders.registry import EncoderSpec

    timm = import_timm(name)
    model_name, repo_id = _model_name(timm, name, revision)
    create = partial(timm.create_model, model_name, num_classes=0, **dict(kwargs or {}))
    try:
        with torch.device("meta"):
            probe = create(pretrained=False)
    except (TypeError, ValueError, RuntimeError, AssertionError) as err:
        problem = f"{type(err).__name__}: {err}"
        raise EncoderError(f"timm cannot build '{name}' ({problem}); check key 'encoder_kwargs'") from err
    cfg = dict(getattr(probe, "pretrained_cfg", None) or {})
    transform = _transform(name, probe)
    ndim, channels, shape = _output(probe, transform["input_px"])
    modes, default = _modes(probe, ndim)
    hub_id = repo_id or cfg.get("hf_hub_id") or None
    spec = EncoderSpec(
        name=name,
        channels=channels,
        flatten_dim=channels * shape[2] * shape[3] if ndim == 4 and len(shape) == 4 else None,
        modes=modes if len(shape) == 4 or ndim == 3 else ("avg", "max"),
        default_mode=default,
        weights_source=f"Hugging Face repo {hub_id} in the local cache" if hub_id else "none offline (--weights PATH)",
        hub_id=hub_id,
        **transform,
    )

    def build(pretrained: bool) -> nn.Module:
        if pretrained:  # only reached without a hub repo: timm would download from a URL
            raise EncoderError(
                f"timm model '{model_name}' names no Hugging Face repo to read offline; pass --weights PATH "
                "(a state dict of the timm model) or --weights random"
            )
        return wrap_timm(create(pretrained=False), cfg.get("classifier"))

    return spec, build
