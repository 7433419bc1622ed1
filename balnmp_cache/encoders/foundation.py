"""Pathology foundation models: one builder and one decorator each, weights from the local Hugging Face cache.

Each entry states what its model card's code does: the timm architecture and the constructor kwargs the
checkpoint needs (``init_values`` for LayerScale, ``mlp_layer``/``act_layer`` for SwiGLU blocks, register
tokens, ...), the eval transform (input size, interpolation, crop, mean/std) and the pooling the card uses
(its default mode). ``mpp`` is the resolution extract reads at unless ``--target-mpp`` /
``--magnification`` say otherwise. Sources, licences and how to place the weights: ``docs/encoders.md``.

Weights are never downloaded: ``--weights pretrained`` (the default) reads ``model.safetensors`` or
``pytorch_model.bin`` from ``models--ORG--NAME/snapshots/<rev>/`` of the local cache (``--encoder-revision``
picks the snapshot), ``--weights PATH`` reads a file; both are loaded strictly, so a checkpoint that does
not fit the kwargs fails naming the first mismatched keys. Importing this module imports neither torch
nor timm.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from balnmp_cache.encoders.registry import TOKEN_MODES, EncoderSpec, register_encoder
from balnmp_cache.encoders.zoo import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["H_OPTIMUS_MEAN", "H_OPTIMUS_STD", "PHIKON_V2_CONFIG"]

H_OPTIMUS_MEAN: tuple[float, float, float] = (0.707223, 0.578729, 0.703617)
H_OPTIMUS_STD: tuple[float, float, float] = (0.211883, 0.230117, 0.177517)
TWENTY_X_MPP = 0.5  # µm/px of 20x scans, the resolution these models were trained at (docs/encoders.md)

PHIKON_V2_CONFIG: dict[str, Any] = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, patch_size=16,
    image_size=224, layerscale_value=1.0, use_swiglu_ffn=False,
)
"""ViT-L/16 Dinov2 settings used when no snapshot ``config.json`` is at hand (random or ``--weights PATH``)."""


def _spec(name: str, hub_id: str, channels: int, *, default_mode: str = "cls", gated: bool = True,
          licence: str, **transform: Any) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        input_px=224,
        mean=transform.pop("mean", IMAGENET_MEAN),
        std=transform.pop("std", IMAGENET_STD),
        channels=channels,
        flatten_dim=None,
        modes=TOKEN_MODES,
        default_mode=default_mode,
        weights_source=f"Hugging Face {hub_id} ({'gated, ' if gated else ''}{licence}), from the local cache",
        mpp=TWENTY_X_MPP,
        hub_id=hub_id,
        gated=gated,
        **transform,
    )


def _timm(architecture: str, model_kwargs: dict[str, Any], extra: dict[str, Any]) -> nn.Module:
    from balnmp_cache.encoders.timm_hook import timm_trunk

    return timm_trunk(architecture, **{**model_kwargs, **extra})


@register_encoder(_spec("uni", "MahmoodLab/UNI", 1024, licence="CC-BY-NC-ND-4.0"))
def uni(pretrained: bool, **kwargs: Any) -> nn.Module:
    """UNI (ViT-L/16, 1024-d); the card's local-weights code: ``vit_large_patch16_224`` with LayerScale."""
    card = dict(img_size=224, patch_size=16, init_values=1e-5, num_classes=0, dynamic_img_size=True)
    return _timm("vit_large_patch16_224", card, kwargs)


@register_encoder(_spec("uni2_h", "MahmoodLab/UNI2-h", 1536, licence="CC-BY-NC-ND-4.0"))
def uni2_h(pretrained: bool, **kwargs: Any) -> nn.Module:
    """UNI2-h (ViT-H/14, 24 blocks of 1536, SwiGLU, 8 register tokens, 1536-d)."""
    from timm.layers.mlp import SwiGLUPacked
    from torch import nn

    card = dict(
        img_size=224, patch_size=14, depth=24, num_heads=24, init_values=1e-5, embed_dim=1536, mlp_ratio=2.66667 * 2,
        num_classes=0, no_embed_class=True, mlp_layer=SwiGLUPacked, act_layer=nn.SiLU, reg_tokens=8,
        dynamic_img_size=True,
    )
    return _timm("vit_giant_patch14_224", card, kwargs)


@register_encoder(
    _spec("virchow2", "paige-ai/Virchow2", 1280, default_mode="cls+mean", licence="CC-BY-NC-ND-4.0",
          interpolation="bicubic")
)
def virchow2(pretrained: bool, **kwargs: Any) -> nn.Module:
    """Virchow2 (ViT-H/14, SwiGLU, 4 register tokens); the card's embedding is CLS + mean of patch tokens, 2560-d."""
    from timm.layers.mlp import SwiGLUPacked
    from torch import nn

    card = dict(
        img_size=224, init_values=1e-5, num_classes=0, reg_tokens=4, mlp_ratio=5.3375, global_pool="",
        dynamic_img_size=True, mlp_layer=SwiGLUPacked, act_layer=nn.SiLU,
    )
    return _timm("vit_huge_patch14_224", card, kwargs)


def _h_optimus(kwargs: dict[str, Any]) -> nn.Module:
    card = dict(img_size=224, num_classes=0, global_pool="token", init_values=1e-5, dynamic_img_size=False)
    return _timm("vit_giant_patch14_reg4_dinov2", card, kwargs)


@register_encoder(
    _spec("h_optimus_0", "bioptimus/H-optimus-0", 1536, licence="Apache-2.0", mean=H_OPTIMUS_MEAN,
          std=H_OPTIMUS_STD, interpolation="bicubic")
)
def h_optimus_0(pretrained: bool, **kwargs: Any) -> nn.Module:
    """H-optimus-0 (ViT-g/14, SwiGLU, 4 register tokens, 1536-d), its own mean/std."""
    return _h_optimus(kwargs)


@register_encoder(
    _spec("h_optimus_1", "bioptimus/H-optimus-1", 1536, licence="licence on the model card", mean=H_OPTIMUS_MEAN,
          std=H_OPTIMUS_STD, interpolation="bicubic")
)
def h_optimus_1(pretrained: bool, **kwargs: Any) -> nn.Module:
    """H-optimus-1: H-optimus-0's architecture and transform, new weights."""
    return _h_optimus(kwargs)


@register_encoder(
    _spec("gigapath", "prov-gigapath/prov-gigapath", 1536, licence="Prov-GigaPath licence", interpolation="bicubic",
          crop_pct=0.875)
)
def gigapath(pretrained: bool, **kwargs: Any) -> nn.Module:
    """Prov-GigaPath tile encoder (ViT-g with 16 px patches, SwiGLU from the dinov2 entrypoint, 1536-d)."""
    card = dict(
        img_size=224, in_chans=3, patch_size=16, embed_dim=1536, depth=40, num_heads=24, init_values=1e-5,
        mlp_ratio=5.33334, num_classes=0, global_pool="token",
    )
    return _timm("vit_giant_patch14_dinov2", card, kwargs)


def _dinov2_trunk(model: nn.Module) -> nn.Module:
    from torch import nn

    class Dinov2Trunk(nn.Module):
        """A transformers ``Dinov2Model``: (B, 3, H, W) -> ``last_hidden_state`` (B, 1 + N, C), after its norm."""

        num_prefix_tokens = 1

        def __init__(self, inner: nn.Module):
            super().__init__()
            self.model = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(pixel_values=x).last_hidden_state

        def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            """Accept the bare ``Dinov2Model`` keys of ``model.safetensors`` as well as this wrapper's."""
            if all(key.startswith("model.") for key in state_dict):
                return state_dict
            return {f"model.{k}": v for k, v in state_dict.items()}

    return Dinov2Trunk(model)


@register_encoder(_spec("phikon_v2", "owkin/phikon-v2", 1024, gated=False, licence="licence on the model card"))
def phikon_v2(pretrained: bool, snapshot: Path | None = None, **kwargs: Any) -> nn.Module:
    """Phikon-v2 (transformers ``Dinov2Model``, ViT-L/16, 1024-d CLS); its architecture from the snapshot's config."""
    from transformers import Dinov2Config, Dinov2Model

    config_file = Path(snapshot) / "config.json" if snapshot is not None else None
    if config_file is not None and config_file.is_file():
        config = Dinov2Config.from_json_file(str(config_file))
    else:
        config = Dinov2Config(**PHIKON_V2_CONFIG)
    for key, value in kwargs.items():
        setattr(config, key, value)
    return _dinov2_trunk(Dinov2Model(config))
