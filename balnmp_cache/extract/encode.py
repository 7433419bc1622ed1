"""The compute side of stage 1: uint8 patches -> (B, D) float32 features, on the CPU or a GPU.

The encoder runs in ``channels_last`` layout under bf16 autocast where the hardware computes bf16
natively — any CUDA GPU, and CPUs with AVX512-BF16 or AMX (about 3x faster than fp32 there, with
features within cosine 0.995 of fp32) — and in fp32 elsewhere; ``--precision fp32`` forces fp32.
The resolved precision and device are part of the cache key.

On a GPU, :meth:`BatchEncoder.submit` only enqueues work: the uint8 batch is copied from pinned
memory without blocking, the eval transform and the model run, and the features come back into
pinned memory without blocking, while the caller assembles the next batch; :meth:`Pending.result`
waits for them. CUDA events time the copy and the forward pass. Batches decoded on the GPU arrive
as device tensors and are not copied at all. On the CPU, ``submit`` computes at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.extract.identity import EncoderIdentity
from balnmp_cache.hardware import bf16_is_native, resolve_device

__all__ = ["BatchEncoder", "Pending", "resolve_decode"]

log = logging.getLogger(__name__)


def resolve_decode(config: ExtractConfig, device: str) -> str:
    """``decode`` as run: ``auto`` is ``cuda`` when the encoder runs there, else ``cpu``.

    Raises:
        ConfigError: ``decode = "cuda"`` with the encoder on the CPU.
    """
    if config.decode == "auto":
        return "cuda" if device == "cuda" else "cpu"
    if config.decode == "cuda" and device != "cuda":
        from balnmp_cache.errors import ConfigError

        raise ConfigError("decode 'cuda' needs the encoder on a GPU; pass --device cuda, or --decode cpu or auto")
    return config.decode


@dataclass
class Pending:
    """Features of one submitted batch, ready (CPU) or on their way (GPU).

    Attributes:
        n: patches in the batch (rows of the result).
        h2d_seconds, forward_seconds: filled by :meth:`result`.
    """

    n: int
    _features: Any = None
    _events: tuple[Any, ...] = ()
    _keep: Any = None  # the pinned input buffer, kept alive until the copy has finished
    h2d_seconds: float = 0.0
    forward_seconds: float = 0.0

    def result(self) -> np.ndarray:
        """(n, D) float32 features; waits for the device."""
        if self._events:
            start, copied, done = self._events
            done.synchronize()
            self.h2d_seconds = start.elapsed_time(copied) / 1000.0
            self.forward_seconds = copied.elapsed_time(done) / 1000.0
            self._events, self._keep = (), None
        return np.asarray(self._features)[: self.n]


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
    _staging: list[Any] = field(default_factory=list, repr=False)  # pinned input buffers, used in turn

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

    @property
    def identity(self) -> EncoderIdentity:
        """What of this encoder goes into the cache key and the slide files."""
        return EncoderIdentity.of(self.encoder, device=self.device, precision=self.precision)

    def _model(self, x: Any) -> Any:
        import torch

        if self.autocast_dtype is None:
            return self.encoder.model(x)
        with torch.autocast(device_type=self.device, dtype=self.autocast_dtype):
            return self.encoder.model(x)

    def __call__(self, patches: Any) -> np.ndarray:
        """(B, h, w, 3) uint8 (numpy, or a torch tensor on the device) -> (B, D) float32 numpy."""
        return self.submit([patches]).result()

    def submit(self, parts: Sequence[Any], *, pad_to: int = 0) -> Pending:
        """Encode the concatenation of ``parts`` ((b_i, h, w, 3) uint8 each, numpy or device tensors).

        On the CPU the features are computed before this returns, and a batch of fewer than ``pad_to``
        patches is run padded with blank patches to ``pad_to`` (their features dropped): oneDNN picks
        its kernels by the batch's shape, and on some CPUs another batch size changes the last bits of
        a patch's features, so a fixed size keeps them independent of how the patches were batched.
        On a GPU the work is enqueued and :meth:`Pending.result` waits for it.
        """
        import torch

        n = sum(len(p) for p in parts)
        with torch.inference_mode():
            if self.device != "cuda":
                t0 = time.perf_counter()
                if n < pad_to:
                    parts = [*parts, np.zeros((pad_to - n, *parts[0].shape[1:]), dtype=np.uint8)]
                batch = parts[0] if len(parts) == 1 else np.concatenate(parts)
                x = self.encoder.preprocess(batch)  # (B, 3, input_px, input_px)
                features = self._model(x).float().numpy()[:n]  # (n, D)
                return Pending(n, features, forward_seconds=time.perf_counter() - t0)
            return self._submit_cuda(parts, n)

    def _pinned(self, shape: tuple[int, ...]) -> Any:
        import torch

        self._staging = [b for b in self._staging if tuple(b.shape) == shape] or [
            torch.empty(shape, dtype=torch.uint8).pin_memory() for _ in range(2)
        ]
        buffer = self._staging.pop(0)
        self._staging.append(buffer)  # two buffers in turn: one may still be copying while the next fills
        return buffer

    def _host_batch(self, parts: Sequence[Any], n: int) -> Any:
        """All-numpy ``parts`` copied once, straight into a pinned buffer; ``None`` when some are on the device."""
        if not all(isinstance(p, np.ndarray) for p in parts):
            return None
        buffer = self._pinned((n, *parts[0].shape[1:]))
        view, row = buffer.numpy(), 0
        for part in parts:
            view[row : row + len(part)] = part
            row += len(part)
        return buffer

    def _on_device(self, parts: Sequence[Any]) -> Any:
        import torch

        tensors = [p if isinstance(p, torch.Tensor) else torch.from_numpy(p).to(self.device) for p in parts]
        return tensors[0] if len(tensors) == 1 else torch.cat(tensors)

    def _submit_cuda(self, parts: Sequence[Any], n: int) -> Pending:
        import torch

        start, copied, done = (torch.cuda.Event(enable_timing=True) for _ in range(3))
        keep = self._host_batch(parts, n)  # the pinned input, kept alive until its copy has run
        start.record()
        batch = keep.to(self.device, non_blocking=True) if keep is not None else self._on_device(parts)
        copied.record()  # batch: (B, h, w, 3) uint8 on the device
        x = self.encoder.preprocess(batch)
        features = self._model(x).float()  # (B, D) on the device
        host = torch.empty(features.shape, dtype=torch.float32, pin_memory=True)
        host.copy_(features, non_blocking=True)
        done.record()
        return Pending(n, host.numpy(), (start, copied, done), keep)
