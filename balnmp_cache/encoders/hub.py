"""Weights from a local Hugging Face cache, never from the network.

Foundation models (and ``timm:`` / ``hf-hub:`` encoders) take their weights from the Hugging Face hub
cache layout that ``hf download`` (``huggingface-cli download`` before huggingface_hub 1.0) writes::

    <cache>/models--ORG--NAME/refs/main                      the commit the ref points at
    <cache>/models--ORG--NAME/snapshots/<commit>/config.json
    <cache>/models--ORG--NAME/snapshots/<commit>/model.safetensors | pytorch_model.bin

``<cache>`` is, as huggingface_hub resolves it, ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``; it is read from the environment at
each call (huggingface_hub reads it once, at import). Files are found with
``huggingface_hub.try_to_load_from_cache``, which only looks at the disk. A revision (``--encoder-revision``)
is a ref name (``main``, a branch, a tag) or a full commit hash. While a model is built, ``HF_HUB_OFFLINE=1``
is set (:func:`offline`), so no library it calls can reach for the network either.

When the weights are absent, :func:`missing_weights` gives the one line that names the model, the file
expected and how to get it (and, for gated models, that the licence must be accepted first). Gated models
are never redistributed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from balnmp_cache.errors import EncoderError

__all__ = [
    "CONFIG_FILE",
    "WEIGHT_FILES",
    "HubFiles",
    "expected_weights",
    "find_config",
    "find_weights",
    "how_to_get",
    "hub_cache_dir",
    "missing_config",
    "missing_weights",
    "offline",
    "repo_folder",
]

WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")
"""Weight file names looked for in a snapshot, in timm's order of preference."""
CONFIG_FILE = "config.json"


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache of this environment (see the module docstring for the order)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def repo_folder(repo_id: str) -> Path:
    """``<cache>/models--ORG--NAME``, the folder a download of ``repo_id`` fills."""
    return hub_cache_dir() / f"models--{repo_id.replace('/', '--')}"


@dataclass(frozen=True)
class HubFiles:
    """Where one model's files are in the cache.

    Attributes:
        repo_id: ``ORG/NAME``.
        revision: the ref or commit asked for (``main`` by default).
        path: the file found.
    """

    repo_id: str
    revision: str
    path: Path

    @property
    def snapshot(self) -> Path:
        """The snapshot folder (``.../snapshots/<commit>``) holding :attr:`path`."""
        return self.path.parent


def _cached(repo_id: str, filename: str, revision: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache_dir(), revision=revision)
    except ValueError as err:  # a malformed repo id
        raise EncoderError(f"'{repo_id}' is not a Hugging Face repo id ({err}); use --encoder hf-hub:ORG/NAME") from err
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def find_weights(repo_id: str, revision: str | None = None) -> HubFiles | None:
    """The first of :data:`WEIGHT_FILES` cached for ``repo_id`` at ``revision``, or ``None``."""
    revision = revision or "main"
    for name in WEIGHT_FILES:
        found = _cached(repo_id, name, revision)
        if found is not None:
            return HubFiles(repo_id, revision, found)
    return None


def find_config(repo_id: str, revision: str | None = None) -> HubFiles | None:
    """The cached ``config.json`` of ``repo_id`` at ``revision``, or ``None``."""
    revision = revision or "main"
    found = _cached(repo_id, CONFIG_FILE, revision)
    return HubFiles(repo_id, revision, found) if found is not None else None


def _expected(repo_id: str, revision: str | None, filename: str) -> str:
    snapshot = "<commit>" if revision in (None, "main") or len(str(revision)) != 40 else str(revision)
    ref = "" if revision in (None, "main") else f" (revision {revision})"
    return f"{repo_folder(repo_id)}/snapshots/{snapshot}/{filename}{ref}"


def expected_weights(repo_id: str, revision: str | None) -> str:
    """The weight files looked for in the snapshot of ``repo_id`` at ``revision`` (``<commit>`` when unknown)."""
    return _expected(repo_id, revision, " | ".join(WEIGHT_FILES[:2]))


def how_to_get(repo_id: str, *, gated: bool) -> str:
    """How to put the files of ``repo_id`` into this cache (for a gated repo: accept its licence first)."""
    url = f"https://huggingface.co/{repo_id}"
    gate = f"{repo_id} is gated: accept the licence at {url}, then run" if gated else "run"
    return (
        f"{gate} `hf download {repo_id}` on a machine with internet and copy its ~/.cache/huggingface/hub/"
        f"{repo_folder(repo_id).name} into {hub_cache_dir()} (or set HF_HOME / HF_HUB_CACHE), "
        "or pass --weights PATH"
    )


def missing_weights(repo_id: str, revision: str | None, *, model: str, gated: bool) -> str:
    """One line: the model, the weight file expected and how to get it."""
    expected = expected_weights(repo_id, revision)
    return f"weights of {model} not found: expected {expected}; {how_to_get(repo_id, gated=gated)}"


def missing_config(repo_id: str, revision: str | None, *, model: str, gated: bool) -> str:
    """One line: the model, the ``config.json`` expected and how to get it."""
    expected = _expected(repo_id, revision, CONFIG_FILE)
    return (
        f"config of {model} not found: expected {expected} (it names the architecture); "
        f"{how_to_get(repo_id, gated=gated)}"
    )


@contextmanager
def offline() -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE=1`` (and ``TRANSFORMERS_OFFLINE=1``) for the body, then restore both."""
    saved = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
