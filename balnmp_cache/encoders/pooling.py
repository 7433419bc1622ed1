"""Feature-map pooling (the encoder ``mode``) and the eval transform of uint8 patches."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MODES", "PooledEncoder", "preprocess_patches"]

MODES: tuple[str, ...] = ("avg", "max", "flatten")


class PooledEncoder(nn.Module):
    """A trunk followed by the mode's reduction of its feature map.

    ``forward(x)``: (B, 3, H, W) float, normalised -> (B, D) float, where the trunk gives (B, C, h, w) and

    * ``avg``: global average over h, w -> D = C;
    * ``max``: global maximum over h, w -> D = C;
    * ``flatten``: ``torch.flatten(map, 1)``, channel-major, identical to the official ``x.view(-1, C*h*w)``
      -> D = C*h*w (25,088 for vgg16_bn's 512x7x7 pool5).
    """

    def __init__(self, trunk: nn.Module, mode: str):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.trunk = trunk
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.trunk(x)  # (B, C, h, w)
        if self.mode == "avg":
            return fmap.mean(dim=(2, 3))  # (B, C)
        if self.mode == "max":
            return fmap.amax(dim=(2, 3))  # (B, C)
        return torch.flatten(fmap, 1)  # (B, C*h*w), C-major


def preprocess_patches(
    patches: torch.Tensor | np.ndarray,
    *,
    input_px: int,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device | str = "cpu",
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 RGB patches -> the encoder's normalised input.

    The batch moves to ``device`` as uint8 (4x less transfer than float) and is resized to ``input_px``
    squared with antialiased bilinear interpolation, reproducing the official PIL ``Resize((224, 224))``
    (bilinear, antialiased, rounded to uint8), then scaled to [0, 1] and normalised with ``mean``/``std``.
    On the CPU the resize runs on uint8 (torch's uint8 kernel follows PIL's fixed-point one: for 256 -> 224,
    about 0.3 % of values differ from PIL's, by one grey level); elsewhere it runs in float32 and is rounded
    to whole grey levels (about 20 % of values differ, by at most one level).

    Args:
        patches: (B, h, w, 3) uint8 RGB, a torch tensor or NumPy array.
        input_px: side of the square model input in pixels.
        mean, std: per-channel normalisation (RGB order), on the [0, 1] scale.
        device: where the result lives.
        channels_last: return the batch in ``torch.channels_last`` memory format.

    Returns:
        (B, 3, input_px, input_px) float32.

    Raises:
        ValueError: ``patches`` is not a (B, h, w, 3) uint8 batch.
    """
    x = torch.from_numpy(np.ascontiguousarray(patches)) if isinstance(patches, np.ndarray) else patches
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(
            f"patches must be a (B, h, w, 3) uint8 RGB batch, got shape {tuple(x.shape)} and dtype {x.dtype}"
        )
    x = x.to(device, non_blocking=True).permute(0, 3, 1, 2)  # (B, 3, h, w) uint8
    if tuple(x.shape[-2:]) != (input_px, input_px):
        size = (input_px, input_px)
        if x.device.type == "cpu":
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).float()
        else:  # no uint8 antialiased kernel off the CPU
            x = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
            x = x.round_().clamp_(0, 255)
    x = x.float().div_(255.0)  # (B, 3, input_px, input_px) in [0, 1]
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = (x - mean_t) / std_t
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
