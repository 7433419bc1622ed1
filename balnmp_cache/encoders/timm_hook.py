"""``timm:<model_name>``: any timm model as an encoder, when the optional ``timm`` extra is installed.

The model is ``timm.create_model(model_name, pretrained=..., num_classes=0)``, whose forward already
returns timm's pooled pre-logits features (global average pooling for CNNs, the class token or the
model's own pooling for transformers). The only mode is therefore ``avg``, meaning "timm's own
pooling". Input size, mean and std come from the model's ``pretrained_cfg``. Pretrained weights are
whatever timm resolves (usually the Hugging Face hub cache); failures become :class:`EncoderError`.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from balnmp_cache.errors import EncoderError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from balnmp_cache.encoders.registry import EncoderSpec

__all__ = ["INSTALL_HINT", "TIMM_PREFIX", "import_timm", "timm_entry"]

log = logging.getLogger(__name__)

TIMM_PREFIX = "timm:"
INSTALL_HINT = "pip install 'balnmp-cache[timm]'"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def import_timm(name: str) -> Any:
    """Import timm, or raise an EncoderError with the install hint."""
    try:
        import timm
    except ImportError as err:
        raise EncoderError(
            f"encoder '{name}' needs the optional package timm, which is not installed; run `{INSTALL_HINT}` "
            "or change --encoder to a built-in encoder"
        ) from err
    return timm


def _make_trunk_class() -> type:
    from torch import nn

    class TimmTrunk(nn.Module):
        """A timm model built with ``num_classes=0``: (B, 3, H, W) -> (B, D, 1, 1), its pooled features."""

        def __init__(self, model: nn.Module, classifier: str | None):
            super().__init__()
            self.model = model
            self.classifier = classifier

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)[:, :, None, None]  # (B, D, 1, 1)

        def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            """Accept the bare timm model's keys (dropping its classifier) as well as this wrapper's."""
            if all(key.startswith("model.") for key in state_dict):
                return state_dict
            head = f"{self.classifier}." if self.classifier else None
            return {f"model.{k}": v for k, v in state_dict.items() if head is None or not k.startswith(head)}

    return TimmTrunk


def _rgb(values: Iterable[float]) -> tuple[float, float, float]:
    """One value per RGB channel (a timm ``pretrained_cfg`` mean or std) as floats."""
    red, green, blue = (float(v) for v in values)
    return red, green, blue


def timm_entry(name: str) -> tuple[EncoderSpec, Callable[[bool], nn.Module]]:
    """The spec and builder of ``timm:<model_name>``.

    Raises:
        EncoderError: timm is missing, or the model name is unknown to timm (with close matches).
    """
    import torch

    from balnmp_cache.encoders.registry import EncoderSpec

    model_name = name[len(TIMM_PREFIX) :]
    timm = import_timm(name)
    if not timm.is_model(model_name):
        close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(TIMM_PREFIX + c for c in close)}?" if close else ""
        raise EncoderError(
            f"timm has no model '{model_name}' (from --encoder {name}){hint} "
            "See timm.list_models() for the valid names."
        )
    with torch.device("meta"):
        probe = timm.create_model(model_name, pretrained=False, num_classes=0)
    cfg = dict(getattr(probe, "pretrained_cfg", None) or {})
    input_px = int(cfg.get("input_size", (3, 224, 224))[-1])
    try:
        with torch.device("meta"):
            channels = int(probe(torch.empty(1, 3, input_px, input_px)).shape[-1])
    except Exception:  # some models do not run on the meta device
        channels = int(getattr(probe, "head_hidden_size", None) or probe.num_features)
    spec = EncoderSpec(
        name=name,
        input_px=input_px,
        mean=_rgb(cfg.get("mean", _IMAGENET_MEAN)),
        std=_rgb(cfg.get("std", _IMAGENET_STD)),
        channels=channels,
        flatten_dim=None,
        modes=("avg",),
        default_mode="avg",
        weights_source=f"timm pretrained weights of {model_name} ({cfg.get('hf_hub_id') or cfg.get('url') or 'timm'})",
    )
    trunk_class = _make_trunk_class()

    def build(pretrained: bool) -> nn.Module:
        try:
            model = timm.create_model(model_name, pretrained=pretrained, num_classes=0)
        except Exception as err:
            if not pretrained:
                raise
            raise EncoderError(
                f"cannot load timm's pretrained weights for '{model_name}' ({type(err).__name__}: {err}); put them in "
                "the Hugging Face cache (HF_HOME) on a machine with network access, or pass --weights PATH "
                "or --weights random"
            ) from err
        return trunk_class(model, cfg.get("classifier"))

    return spec, build
