"""The tensor side of stage 2: devices, the in-memory features as a tensor, evaluation, CPU dropout.

:class:`FeatureSource` gathers a batch of bags ``(B, N, D)`` from the cache's feature matrix (kept in
its stored dtype) and converts only that batch to float32. :func:`evaluate` scores bags with a head.
:func:`fast_dropout` swaps ``nn.Dropout`` for an equivalent that is about 3x faster on the CPU.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any, Literal, overload

import numpy as np
import torch

from balnmp_cache.hardware import bf16_is_native
from balnmp_cache.mil import MILHead
from balnmp_cache.train.bags import BagSet, iter_batches

__all__ = [
    "FeatureSource",
    "autocast",
    "batch_inputs",
    "eval_batch_size",
    "evaluate",
    "fast_dropout",
    "resolve_device",
    "torch_threads",
]

log = logging.getLogger(__name__)

_EVAL_BATCH = 256
_EVAL_BATCH_BYTES = 32 << 20  # float32 bytes of one evaluation batch (B, N, D): bounds peak memory at 25,088-d
_GATHER_CHUNK_BYTES = 4 << 20


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else the CPU (see :func:`balnmp_cache.hardware.resolve_device`)."""
    from balnmp_cache import hardware

    return torch.device(hardware.resolve_device(name))


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Let torch use ``threads`` CPU threads inside the block (unchanged when ``None``)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class FeatureSource:
    """The feature matrix as a tensor, gathered batch by batch.

    On the CPU the tensor shares memory with the cache's array (no copy, stored dtype). On a GPU
    the whole matrix is copied to the device once when it fits, else batches are copied.
    """

    def __init__(self, features: np.ndarray, device: torch.device, *, precision: str = "auto") -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a read-only array is never written through
            tensor = torch.from_numpy(features)
        self.device = device
        self.dim = int(features.shape[1])
        bf16 = precision == "bf16" or (precision == "auto" and bf16_is_native(device.type))
        self.autocast_dtype = torch.bfloat16 if bf16 else None
        if device.type == "cuda":
            try:
                tensor = tensor.to(device)
            except torch.OutOfMemoryError:
                log.warning("features do not fit on %s; batches are copied from host memory", device)
        self.tensor = tensor

    def gather(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N) rows (-1 = padding) -> features (B, N, D) float32 and mask (B, N), ``None`` without padding."""
        batch, width = rows.shape
        valid = rows >= 0
        index = torch.from_numpy(np.where(valid, rows, 0).reshape(-1)).to(self.tensor.device)
        x = torch.empty((len(index), self.dim), dtype=torch.float32, device=self.tensor.device)
        # Convert in chunks of about 4 MiB of stored features, so no stored-dtype copy of the whole batch exists.
        step = max(1, _GATHER_CHUNK_BYTES // (self.dim * self.tensor.element_size()))
        for start in range(0, len(index), step):
            x[start : start + step].copy_(self.tensor.index_select(0, index[start : start + step]))
        x = x.to(self.device, non_blocking=True).view(batch, width, self.dim)
        mask = None if valid.all() else torch.from_numpy(valid).to(self.device)
        return x, mask  # (B, N, D), (B, N)

    def placeholder(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A zero-cost stand-in for models that ignore features (clinical-only)."""
        valid = rows >= 0
        x = torch.zeros((), device=self.device).expand(rows.shape[0], rows.shape[1], self.dim)
        return x, None if valid.all() else torch.from_numpy(valid).to(self.device)


def batch_inputs(
    source: FeatureSource, head: MILHead, clinical: torch.Tensor | None, batch: BagSet
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Features (B, N, D), mask (B, N) and clinical vectors (B, K) of one batch for ``head``.

    A head that does not read features (``uses_features = False``) gets a zero-cost stand-in.
    """
    x, mask = source.gather(batch.rows) if head.uses_features else source.placeholder(batch.rows)
    if clinical is not None:
        clinical = clinical[torch.from_numpy(batch.patient).to(clinical.device)]  # (B, K)
    return x, mask, clinical


def autocast(source: FeatureSource) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast of the training forward pass when the source's precision asks for it, else nothing."""
    if source.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(source.device.type, dtype=source.autocast_dtype)


def eval_batch_size(width: int, dim: int) -> int:
    """Bags per evaluation batch: up to 256, fewer when a (B, N, D) float32 batch would exceed 32 MiB."""
    return int(max(1, min(_EVAL_BATCH, _EVAL_BATCH_BYTES // max(1, width * dim * 4))))


class _RandDropout(torch.nn.Module):
    """Inverted dropout drawn with ``torch.rand_like``: the same distribution as ``nn.Dropout``.

    On the CPU ``rand_like`` plus a comparison is about 3x faster than the ``bernoulli_`` that
    ``nn.Dropout`` uses, and dropout was a third of a training step at 512-d.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p >= 1.0:
            return torch.zeros_like(x)
        keep = torch.rand_like(x, dtype=torch.float32) >= self.p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))


@contextlib.contextmanager
def fast_dropout(head: torch.nn.Module) -> Iterator[None]:
    """Swap every ``nn.Dropout`` of ``head`` for :class:`_RandDropout` inside the block (on the CPU).

    The head's parameters and state dict are untouched; the original modules are put back on exit.
    """
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Dropout]] = []
    for parent in head.modules():
        for name, child in parent.named_children():
            if type(child) is torch.nn.Dropout and not child.inplace:
                swapped.append((parent, name, child))
    for parent, name, child in swapped:
        replacement = _RandDropout(child.p)
        replacement.train(child.training)
        setattr(parent, name, replacement)
    try:
        yield
    finally:
        for parent, name, child in swapped:
            child.train(getattr(parent, name).training)
            setattr(parent, name, child)


@overload
def evaluate(
    head: MILHead, clinical: torch.Tensor | None, bags: BagSet, source: FeatureSource, *,
    attention: Literal[False] = ...,
) -> tuple[np.ndarray, None]: ...


@overload
def evaluate(
    head: MILHead, clinical: torch.Tensor | None, bags: BagSet, source: FeatureSource, *, attention: Literal[True]
) -> tuple[np.ndarray, np.ndarray]: ...


def evaluate(
    head: MILHead,
    clinical: torch.Tensor | None,
    bags: BagSet,
    source: FeatureSource,
    *,
    attention: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Eval-mode probabilities (B, C) of every bag and, on request, attention (B, N), in float32.

    Args:
        head: the head (put in eval mode).
        clinical: (P, K) clinical vectors of every patient on the source's device, or ``None``.
        bags: the bags to score.
        source: the features.
        attention: also return the attention of every patch.
    """
    n_bags, width = bags.rows.shape
    probs = np.zeros((n_bags, head.n_classes), dtype=np.float32)
    weights = np.zeros((n_bags, width), dtype=np.float32) if attention else None
    head.eval()
    start = 0
    with torch.inference_mode():
        for batch in iter_batches(bags, eval_batch_size(width, source.dim)):
            stop = start + len(batch)
            x, mask, clin = batch_inputs(source, head, clinical, batch)
            # Always fp32 here, whatever the training precision: bf16 logits would quantise the
            # scores into artificial ties that bias AUCs and DeLong tests. Evaluation is forward-only
            # and cheap next to training.
            logits, att = head(x, mask, clin)
            probs[start:stop] = torch.softmax(logits.float(), dim=1).cpu().numpy()
            if weights is not None:
                weights[start:stop, : att.shape[1]] = att.float().cpu().numpy()
            start = stop
    return probs, weights
