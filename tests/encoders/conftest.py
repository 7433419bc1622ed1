"""Fixtures for encoder tests: a synthetic patch batch and an isolated torch hub cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def patches() -> np.ndarray:
    """(2, 256, 256, 3) uint8 RGB: smooth H&E-like colour gradients plus noise."""
    rng = np.random.default_rng(1234)
    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    base = np.stack([0.85 - 0.3 * xx, 0.55 - 0.2 * yy, 0.75 - 0.1 * xx * yy], axis=-1)
    batch = np.stack([base, base[::-1, ::-1]]) * 255 + rng.normal(0, 12, size=(2, 256, 256, 3))
    return np.clip(batch, 0, 255).astype(np.uint8)


@pytest.fixture()
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache for the test (restored afterwards)."""
    import torch

    hub = tmp_path / "torch_hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    return hub


@pytest.fixture()
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face hub cache (HF_HUB_CACHE), HF_HUB_OFFLINE=1, and no network for the test."""
    from tests.encoders.hubcache import isolate_hub

    return isolate_hub(tmp_path, monkeypatch)
