"""A local Hugging Face hub cache written by the tests, in the layout ``hf download`` leaves.

``write_snapshot`` writes ``models--ORG--NAME/{blobs/<sha256>, snapshots/<commit>/<file> -> blob, refs/<ref>}``
for a timm model (``config.json`` in timm's hub format + ``model.safetensors`` or ``pytorch_model.bin``), so
the code under test reads it exactly as it would read a real download. The tiny ViT stands in for a
foundation model: real FM weights cannot be downloaded here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

TINY_ARCH = "vit_tiny_patch16_224"
TINY_ARGS: dict[str, Any] = {"img_size": 224, "depth": 2, "embed_dim": 64, "num_heads": 2, "reg_tokens": 2}
TINY_CFG: dict[str, Any] = {
    "input_size": [3, 224, 224],
    "interpolation": "bicubic",
    "crop_pct": 0.875,
    "crop_mode": "center",
    "mean": [0.70, 0.55, 0.70],
    "std": [0.20, 0.23, 0.18],
    "num_classes": 0,
    "first_conv": "patch_embed.proj",
    "classifier": "head",
}


def tiny_vit(seed: int = 0, **overrides: Any) -> nn.Module:
    """The tiny ViT (2 blocks of 64, class token + 2 register tokens) with seeded random weights."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(TINY_ARCH, pretrained=False, num_classes=0, **{**TINY_ARGS, **overrides}).eval()


def _blob(repo: Path, data: bytes) -> Path:
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    return blob


def _link(repo: Path, commit: str, name: str, data: bytes) -> Path:
    blob = _blob(repo, data)
    target = repo / "snapshots" / commit / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    os.symlink(os.path.relpath(blob, target.parent), target)
    return target


def write_snapshot(
    cache: Path,
    repo_id: str,
    model: nn.Module | None,
    *,
    commit: str = "a" * 40,
    ref: str | None = "main",
    config: dict[str, Any] | None = None,
    weights_name: str = "model.safetensors",
) -> Path:
    """Write one snapshot of ``repo_id`` into the hub cache ``cache``; its folder.

    Args:
        cache: the hub cache (what ``HF_HUB_CACHE`` points at).
        repo_id: ``ORG/NAME``.
        model: the module whose state dict becomes the weights file; ``None`` writes none.
        commit: the snapshot's commit hash (40 hex digits).
        ref: a ref (``main``, a tag) pointing at ``commit``; ``None`` writes none.
        config: the ``config.json``; default: the tiny ViT's, in timm's hub format. ``{}`` writes none.
        weights_name: ``model.safetensors`` or ``pytorch_model.bin``.
    """
    from safetensors.torch import save

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    if config is None:
        config = {"architecture": TINY_ARCH, "num_classes": 0, "num_features": 64,
                  "model_args": dict(TINY_ARGS), "pretrained_cfg": dict(TINY_CFG)}
    if config:
        _link(repo, commit, "config.json", json.dumps(config).encode())
    if model is not None:
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        if weights_name.endswith(".safetensors"):
            data = save(state)
        else:
            path = repo / "tmp.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(state, path)
            data = path.read_bytes()
            path.unlink()
        _link(repo, commit, weights_name, data)
    if ref is not None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return repo / "snapshots" / commit


def isolate_hub(tmp_path: Path, monkeypatch: Any) -> Path:
    """Point ``HF_HUB_CACHE`` at an empty folder, set ``HF_HUB_OFFLINE=1`` and refuse every socket connection."""
    import socket

    cache = tmp_path / "hf_hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return cache
