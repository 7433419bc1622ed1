"""Pooling (the encoder ``mode``) of a trunk's output, and the eval transform of uint8 patches."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from balnmp_cache.encoders.registry import CNN_MODES, INTERPOLATIONS, TOKEN_MODES

__all__ = ["MODES", "PooledEncoder", "preprocess_patches"]

MODES: tuple[str, ...] = CNN_MODES + TOKEN_MODES


class PooledEncoder(nn.Module):
    """A trunk followed by the mode's reduction of its output.

    ``forward(x)``: (B, 3, H, W) float, normalised -> (B, D) float.

    A CNN trunk gives a feature map (B, C, h, w):

    * ``avg``: global average over h, w -> D = C;
    * ``max``: global maximum over h, w -> D = C;
    * ``flatten``: ``torch.flatten(map, 1)``, channel-major, identical to the official ``x.view(-1, C*h*w)``
      -> D = C*h*w (25,088 for vgg16_bn's 512x7x7 pool5).

    A transformer trunk gives its token sequence (B, N, C) after the final norm, with
    ``trunk.num_prefix_tokens`` leading tokens (class token first, then any register tokens):

    * ``cls``: the class token ``tokens[:, 0]`` -> D = C;
    * ``mean_tokens``: the mean of the patch tokens ``tokens[:, num_prefix_tokens:]`` (register tokens
      excluded) -> D = C;
    * ``cls+mean``: both, concatenated (Virchow's embedding) -> D = 2C.

    A trunk may define ``pool_norm`` (timm's ``fc_norm``, applied after pooling by models whose final
    norm comes after the pool); it is applied to each pooled vector, as timm's own head does.
    """

    def __init__(self, trunk: nn.Module, mode: str):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.trunk = trunk
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.trunk(x)  # (B, C, h, w) for CNN modes, (B, N, C) for token modes
        if self.mode == "avg":
            return out.mean(dim=(2, 3))  # (B, C)
        if self.mode == "max":
            return out.amax(dim=(2, 3))  # (B, C)
        if self.mode == "flatten":
            return torch.flatten(out, 1)  # (B, C*h*w), C-major
        norm = getattr(self.trunk, "pool_norm", None)
        if norm is None:
            norm = nn.Identity()
        prefix = int(getattr(self.trunk, "num_prefix_tokens", 1))
        if self.mode == "cls":
            return norm(out[:, 0])  # (B, C)
        mean = norm(out[:, prefix:].mean(dim=1))  # (B, C), register tokens excluded
        if self.mode == "mean_tokens":
            return mean
        return torch.cat([norm(out[:, 0]), mean], dim=-1)  # (B, 2C)


def _resize(x: torch.Tensor, side: int, interpolation: str) -> torch.Tensor:
    """(B, 3, h, w) uint8 -> (B, 3, side, side) float32 holding whole grey levels, antialiased like PIL."""
    size = (side, side)
    if x.device.type == "cpu":  # torch's uint8 kernels follow PIL's fixed-point ones
        return F.interpolate(x, size=size, mode=interpolation, align_corners=False, antialias=True).float()
    x = F.interpolate(x.float(), size=size, mode=interpolation, align_corners=False, antialias=True)
    return x.round_().clamp_(0, 255)  # no antialiased uint8 kernel off the CPU


def preprocess_patches(
    patches: torch.Tensor | np.ndarray,
    *,
    input_px: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bilinear",
    crop_pct: float = 1.0,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 RGB patches -> the encoder's normalised input.

    The batch moves to ``device`` as uint8 (4x less transfer than float). With ``crop_pct`` 1 it is resized
    to ``input_px`` squared; with ``crop_pct`` < 1 it is resized to ``floor(input_px / crop_pct)`` squared and
    the central ``input_px`` square is kept, as timm's eval transform (``Resize(int(input_px / crop_pct))``
    + ``CenterCrop(input_px)``) does for a square patch. The resize is antialiased ``interpolation``
    (``bilinear`` or ``bicubic``), reproducing PIL's (rounded to uint8); then the batch is scaled to [0, 1]
    and normalised with ``mean``/``std``. On the CPU the resize runs on uint8 (torch's uint8 kernels follow
    PIL's fixed-point ones: bilinear 256 -> 224 differs from PIL in about 0.3 % of values, bicubic in about
    0.6 %, by one grey level); elsewhere it runs in float32 and is rounded to whole grey levels.

    Args:
        patches: (B, h, w, 3) uint8 RGB, a torch tensor or NumPy array.
        input_px: side of the square model input in pixels.
        mean, std: per-channel normalisation (RGB order), on the [0, 1] scale.
        interpolation: ``bilinear`` (the official BALNMP transform) or ``bicubic``.
        crop_pct: share of the resized patch kept by the centre crop (timm's ``crop_pct``), in (0, 1].
        device: where the result lives.
        channels_last: return the batch in ``torch.channels_last`` memory format.

    Returns:
        (B, 3, input_px, input_px) float32.

    Raises:
        ValueError: ``patches`` is not a (B, h, w, 3) uint8 batch, or an unknown interpolation / crop.
    """
    x = torch.from_numpy(np.ascontiguousarray(patches)) if isinstance(patches, np.ndarray) else patches
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(
            f"patches must be a (B, h, w, 3) uint8 RGB batch, got shape {tuple(x.shape)} and dtype {x.dtype}"
        )
    if interpolation not in INTERPOLATIONS or not 0 < crop_pct <= 1:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS} and crop_pct in (0, 1], got "
                         f"{interpolation!r} and {crop_pct!r}")
    x = x.to(device, non_blocking=True).permute(0, 3, 1, 2)  # (B, 3, h, w) uint8
    scale_px = input_px if crop_pct >= 1 else math.floor(input_px / crop_pct)
    if tuple(x.shape[-2:]) != (scale_px, scale_px):
        x = _resize(x, scale_px, interpolation)  # (B, 3, scale_px, scale_px)
    if scale_px != input_px:
        top = round((scale_px - input_px) / 2.0)  # torchvision's CenterCrop offsets
        x = x[:, :, top : top + input_px, top : top + input_px]  # (B, 3, input_px, input_px)
    x = x.float()  # a new tensor unless _resize made one: the steps below may run in place
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x.div_(255.0).sub_(mean_t).div_(std_t)  # in place: the same values as (x / 255 - mean) / std, no copies
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
