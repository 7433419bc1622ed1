"""Weights handling shared by every encoder: seeded construction, digests, checkpoint loading.

* :func:`seeded` builds a module under a fixed seed without disturbing the caller's random state:
  it seeds only the default CPU generator (``torch.random.default_generator``), inside
  ``torch.random.fork_rng(devices=[])``, which restores that generator afterwards. CUDA generators,
  Python's ``random`` and NumPy are never touched, so nothing is disturbed as long as construction
  happens on the CPU (it always does here; models move to the device afterwards).
* :func:`state_dict_sha256` is a canonical digest of tensors (names, dtypes, shapes, bytes), used for
  ImageNet and random weights; :func:`file_sha256` digests a checkpoint file as given.
* :func:`load_checkpoint` reads a local checkpoint (a torch file or ``.safetensors``) into a module
  strictly, after unwrapping
  ``{"state_dict": ...}`` / ``{"model": ...}``, stripping ``module.`` / ``_orig_mod.`` prefixes and
  letting the module translate foreign layouts through an optional ``adapt_state_dict`` method.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from balnmp_cache.errors import EncoderError

__all__ = ["file_sha256", "load_checkpoint", "read_state_dict", "seeded", "state_dict_sha256"]

log = logging.getLogger(__name__)

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_STRIPPED_PREFIXES = ("module.", "_orig_mod.")
_SHOWN_KEYS = 5


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the body with the default CPU generator seeded to ``seed``, then restore its state."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        yield


def state_dict_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over every entry's name, dtype, shape and raw bytes, in sorted key order."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Path, *, chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if isinstance(obj, Mapping):
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise EncoderError(
        f"checkpoint {path} holds no state dict: expected a mapping of parameter names to tensors, or one "
        f"under the key 'state_dict' or 'model'; pass --weights with a state-dict checkpoint, "
        "--weights pretrained or --weights random"
    )


def _strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed and state_dict:
        changed = False
        for prefix in _STRIPPED_PREFIXES:
            if all(k.startswith(prefix) for k in state_dict):
                state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
                changed = True
    return state_dict


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``name -> tensor`` dict (wrappers and prefixes removed).

    Raises:
        EncoderError: the file is missing, is not a torch checkpoint, or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise EncoderError(
            f"weights file {path} does not exist; pass --weights with an existing checkpoint, "
            "--weights pretrained or --weights random"
        )
    try:
        if path.suffix == ".safetensors":  # the Hugging Face hub's format: tensors only, no pickle
            from safetensors.torch import load_file

            obj = load_file(path, device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and safetensors raise several types for corrupt or foreign files
        raise EncoderError(
            f"cannot read weights file {path} as a torch or safetensors checkpoint ({type(err).__name__}: {err}); "
            "pass --weights with a state dict saved by torch.save or safetensors, --weights pretrained or "
            "--weights random"
        ) from err
    return _strip_prefixes(_unwrap(obj, path))


def _first(keys: list[str]) -> str:
    shown = keys[:_SHOWN_KEYS]
    more = f" … (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return ", ".join(shown) + more


def load_checkpoint(module: nn.Module, path: Path, *, encoder: str) -> str:
    """Load the checkpoint at ``path`` into ``module`` strictly and return the file's SHA-256.

    Args:
        module: the encoder's feature-map module (what its builder returns).
        path: a ``torch.save`` file of a state dict, possibly wrapped or prefixed (see module docs).
        encoder: the encoder's name, for messages.

    Raises:
        EncoderError: unreadable file, or keys/shapes that do not match ``module`` (the message lists the
            first missing and unexpected keys).
    """
    state_dict = read_state_dict(path)
    adapt = getattr(module, "adapt_state_dict", None)
    if callable(adapt):
        state_dict = adapt(state_dict)
    own = module.state_dict()
    for key in own:  # pre-1.0 checkpoints lack BatchNorm counters, which eval mode never reads
        if key.endswith("num_batches_tracked") and key not in state_dict:
            state_dict[key] = own[key].clone()
    missing = [key for key in own if key not in state_dict]  # in module order
    unexpected = [key for key in state_dict if key not in own]  # in checkpoint order
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
        raise EncoderError(
            f"checkpoint {path} does not fit encoder '{encoder}': {'; '.join(parts)}; pass --weights with a "
            f"checkpoint of '{encoder}' (or change --encoder to the checkpoint's architecture)"
        )
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:  # shape mismatches
        raise EncoderError(
            f"checkpoint {path} does not fit encoder '{encoder}': {err}; pass --weights with a checkpoint of "
            f"'{encoder}' (or change --encoder to the checkpoint's architecture)"
        ) from err
    digest = file_sha256(Path(path))
    log.info("loaded %d tensors into %s from %s (sha256 %s)", len(state_dict), encoder, path, digest[:12])
    return digest
