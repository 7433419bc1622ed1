"""The compute side of stage 1: uint8 patches -> (B, D) float32 features, on the CPU or a GPU.

The encoder runs in ``channels_last`` layout under bf16 autocast where the hardware computes bf16
natively — any CUDA GPU, and CPUs with AVX512-BF16 or AMX (about 3x faster than fp32 there, with
features within cosine 0.995 of fp32) — and in fp32 elsewhere; ``--precision fp32`` forces fp32.
On a GPU the uint8 batch is pinned so the host-to-device copy overlaps the reader thread's next
decode. The resolved precision and device are part of the cache key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.hardware import bf16_is_native, resolve_device

__all__ = ["BatchEncoder"]

log = logging.getLogger(__name__)


@dataclass
class BatchEncoder:
    """A built encoder plus how to run it: device, autocast dtype, pinned transfers.

    Attributes:
        encoder: the :class:`~balnmp_cache.encoders.Encoder`.
        device: ``cpu`` or ``cuda``.
        autocast_dtype: ``None`` for fp32, else the torch dtype used under autocast.
        precision: ``fp32``, ``bf16`` or ``fp16``, as resolved from the configuration.
    """

    encoder: Any
    device: str
    autocast_dtype: Any
    precision: str = "fp32"

    @classmethod
    def build(cls, config: ExtractConfig) -> BatchEncoder:
        import torch

        from balnmp_cache.encoders import create_encoder

        device = resolve_device(config.device)
        encoder = create_encoder(
            config.encoder, mode=config.mode, weights=config.weights, seed=config.seed, device=device,
            revision=config.encoder_revision, kwargs=config.encoder_kwargs,
        )
        precision = config.precision
        if precision == "auto":
            precision = "bf16" if bf16_is_native(device) else "fp32"
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        # channels_last is faster with oneDNN on the CPU too (about 1.3-1.7x for the encoders here,
        # benchmarks/RESULTS.md); the numbers stay fp32.
        encoder = encoder.to(device, channels_last=True)
        if device == "cuda":
            torch.backends.cudnn.benchmark = True
        log.info("encoder on %s, precision %s", device, precision)
        return cls(encoder=encoder, device=device, autocast_dtype=dtype, precision=precision)

    def __call__(self, patches: np.ndarray) -> np.ndarray:
        """(B, h, w, 3) uint8 -> (B, D) float32 numpy."""
        import torch

        batch = torch.from_numpy(np.ascontiguousarray(patches))
        if self.device == "cuda":
            batch = batch.pin_memory()
        with torch.inference_mode():
            x = self.encoder.preprocess(batch)  # (B, 3, input_px, input_px) on the device
            if self.autocast_dtype is not None:
                with torch.autocast(device_type=self.device, dtype=self.autocast_dtype):
                    features = self.encoder.model(x)
            else:
                features = self.encoder.model(x)
            return features.float().cpu().numpy()  # (B, D)
