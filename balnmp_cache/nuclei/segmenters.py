"""Nucleus segmenters behind one small interface, chosen by name from a registry; nothing is downloaded.

A segmenter turns a batch of RGB patches into label images, one per patch (``segment``), and says what it
is (``identifier``, with the weights' digest for learned models) and which settings change its output
(``settings``); both go into the tables' cache key. ``classical`` (scikit-image, the default) needs
nothing. ``stardist``, ``cellpose`` and ``hovernet`` wrap those packages for users who have them and their
weights locally (``--segmenter stardist --weights PATH``): the package is imported and the weights are
read from ``PATH`` only, never fetched. Without the package or the weights, building one raises a
:class:`~balnmp_cache.errors.NucleiError` with a one-line fix. Those three packages are not installed
with balnmp-cache (TensorFlow / PyTorch stacks of their own), and their ``segment`` paths are not
exercised by the test suite.

Adding one: a function ``(config) -> Segmenter`` decorated with ``@register_segmenter("name")``.
"""

from __future__ import annotations

import hashlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from balnmp_cache.errors import NucleiError
from balnmp_cache.nuclei.classical import ClassicalParams, ClassicalSegmenter

__all__ = ["SEGMENTERS", "Segmenter", "create_segmenter", "list_segmenters", "register_segmenter"]


class Segmenter(Protocol):
    """What the nucleus stage needs from a segmenter.

    Attributes:
        name: the registry name.
        identifier: what produced the labels, e.g. ``classical-v1`` or ``stardist-<weights sha256[:12]>``.
    """

    @property
    def name(self) -> str: ...

    @property
    def identifier(self) -> str: ...

    def settings(self) -> dict[str, Any]:
        """Settings that change the labels besides the identifier (JSON-able)."""

    def segment(self, patches: np.ndarray, *, px_um: float) -> np.ndarray:
        """(B, H, W, 3) uint8 patches at ``px_um`` µm/px -> (B, H, W) int32 labels (0 = background, 1..n)."""


SEGMENTERS: dict[str, Callable[[Any], Segmenter]] = {}
"""Name -> builder taking the stage configuration."""


def register_segmenter(name: str) -> Callable[[Callable[[Any], Segmenter]], Callable[[Any], Segmenter]]:
    """Decorator adding a builder ``(config) -> Segmenter`` under ``name``."""

    def add(builder: Callable[[Any], Segmenter]) -> Callable[[Any], Segmenter]:
        SEGMENTERS[name] = builder
        return builder

    return add


def list_segmenters() -> list[str]:
    """The registered names, sorted."""
    return sorted(SEGMENTERS)


def create_segmenter(config: Any) -> Segmenter:
    """The segmenter ``config.segmenter`` names, built from ``config``.

    Raises:
        NucleiError: an unknown name (the valid ones listed), a missing package or missing weights.
    """
    try:
        builder = SEGMENTERS[config.segmenter]
    except KeyError:
        names = ", ".join(list_segmenters())
        raise NucleiError(f"segmenter {config.segmenter!r} is not one of {names}; change --segmenter") from None
    return builder(config)


@register_segmenter("classical")
def _classical(config: Any) -> Segmenter:
    return ClassicalSegmenter(ClassicalParams.from_config(config))


def _weights_digest(path: Path) -> str:
    """SHA-256 (first 12 hex digits) over a weights file, or over every file of a model folder."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        h.update(file.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:12]


def _require(config: Any, package: str, install: str) -> Path:
    """The local weights path of a learned segmenter, after checking that ``package`` is importable."""
    name = config.segmenter
    if importlib.util.find_spec(package) is None:
        raise NucleiError(
            f"segmenter {name!r} needs the {package} package, which is not installed ({install}); "
            "or use --segmenter classical"
        )
    weights = config.weights
    if weights is None or not Path(weights).exists():
        where = "no --weights was given" if weights is None else f"{weights} does not exist"
        raise NucleiError(
            f"segmenter {name!r} needs --weights PATH to its model on this machine ({where}); nothing is downloaded"
        )
    return Path(weights)


class _LearnedSegmenter(ABC):
    """Shared parts of the wrappers: identifier from the weights, one image at a time."""

    name = ""

    def __init__(self, weights: Path) -> None:
        self.weights = weights
        self.identifier = f"{self.name}-{_weights_digest(weights)}"
        self._model: Any = None

    def settings(self) -> dict[str, Any]:
        return {"weights": self.weights.name}

    def segment(self, patches: np.ndarray, *, px_um: float) -> np.ndarray:
        if self._model is None:
            self._model = self._load()
        return np.stack([np.asarray(self._one(patch, px_um), dtype=np.int32) for patch in patches])

    @abstractmethod
    def _load(self) -> Any:
        """The model, from ``self.weights``."""

    @abstractmethod
    def _one(self, patch: np.ndarray, px_um: float) -> np.ndarray:
        """The label image of one patch."""


class StarDistSegmenter(_LearnedSegmenter):
    """StarDist 2D (e.g. ``2D_versatile_he``) from a local model folder (``config.json`` + weights)."""

    name = "stardist"

    def _load(self) -> Any:
        from stardist.models import StarDist2D

        return StarDist2D(None, name=self.weights.name, basedir=str(self.weights.parent))

    def _one(self, patch: np.ndarray, px_um: float) -> np.ndarray:
        from csbdeep.utils import normalize

        labels, _ = self._model.predict_instances(normalize(patch, 1, 99.8, axis=(0, 1)))
        return labels


class CellposeSegmenter(_LearnedSegmenter):
    """Cellpose (``CellposeModel(pretrained_model=PATH)``) from a local model file."""

    name = "cellpose"

    def _load(self) -> Any:
        from cellpose import models

        return models.CellposeModel(pretrained_model=str(self.weights))

    def _one(self, patch: np.ndarray, px_um: float) -> np.ndarray:
        masks = self._model.eval(patch)[0]
        return masks


class HoVerNetSegmenter(_LearnedSegmenter):
    """HoVer-Net through TIAToolbox's architecture, with a local state dict (``--weights model.pth``)."""

    name = "hovernet"

    def _load(self) -> Any:
        import torch
        from tiatoolbox.models.architecture.hovernet import HoVerNet

        model = HoVerNet(num_types=None, mode="fast")
        model.load_state_dict(torch.load(self.weights, map_location="cpu"))
        return model.eval()

    def _one(self, patch: np.ndarray, px_um: float) -> np.ndarray:
        import torch

        with torch.inference_mode():
            raw = self._model.infer_batch(self._model, torch.from_numpy(patch[None]), device="cpu")
        instances, _ = self._model.postproc([r[0] for r in raw])
        return instances


@register_segmenter("stardist")
def _stardist(config: Any) -> Segmenter:
    return StarDistSegmenter(_require(config, "stardist", "pip install stardist tensorflow"))


@register_segmenter("cellpose")
def _cellpose(config: Any) -> Segmenter:
    return CellposeSegmenter(_require(config, "cellpose", "pip install cellpose"))


@register_segmenter("hovernet")
def _hovernet(config: Any) -> Segmenter:
    return HoVerNetSegmenter(_require(config, "tiatoolbox", "pip install tiatoolbox"))
