"""What an encoder is, for the cache key, without building it when a previous run already did.

Building an encoder to learn its identity (the weights digest is part of the cache key) means
importing torch (about 4 s on a loaded 2-core machine), building the model and hashing its weights:
all of it wasted when every slide is already in the cache. :func:`known_identity` answers from a
small record in the user's cache folder (``$XDG_CACHE_HOME/balnmp_cache/encoder-identities.json``,
by default under ``~/.cache``, beside torch's own weights cache) written by the last run that built
the encoder with the same settings, and :func:`remember_identity` writes it.

A record is found by a digest of everything that decides the identity — the encoder, mode, weights
argument and seed, the requested device and precision, the torch and torchvision versions, this
package's version and the size and mtime of its encoder modules, the environment variables that move
the weights (``TORCH_HOME``, ``XDG_CACHE_HOME``, ``HOME``) or the GPUs (``CUDA_VISIBLE_DEVICES``), and
the machine (architecture, CPU flags, whether GPU device nodes exist) — and it is trusted only while
each weights file it names has the size and mtime it had then. Weights whose file is not known
(timm) are never recorded, so they are always built. When the recorded device is ``cuda`` the GPU
is checked to be usable before the record is trusted.

A wrong record can only cost time, with one exception, accepted as the trade-off: a weights file
rewritten with its size and mtime kept. Whenever slides remain to extract, the encoder is built
anyway and its real identity compared with the record (``pipeline.run_extract``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.fsio import atomic_write_text

__all__ = ["EncoderIdentity", "identity_file", "known_identity", "remember_identity"]

log = logging.getLogger(__name__)

_MAX_RECORDS = 64
_ENV = ("TORCH_HOME", "XDG_CACHE_HOME", "HOME", "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
_GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/proc/driver/nvidia/version")


@dataclass(frozen=True)
class EncoderIdentity:
    """Everything of a built encoder that goes into the provenance (see ``provenance.py``).

    Attributes: as :class:`~balnmp_cache.encoders.Encoder` (``name`` ... ``random_weights``, the
    spec's ``input_px``, ``mean``, ``std`` and ``mpp``), plus the resolved ``device`` and ``precision``.
    """

    name: str
    mode: str
    identifier: str
    weights: str
    weights_sha256: str
    random_weights: bool
    input_px: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int
    device: str
    precision: str
    mpp: float | None = None  # the spec's training resolution, when it has one

    @classmethod
    def of(cls, encoder: Any, *, device: str, precision: str) -> EncoderIdentity:
        """The identity of a built :class:`~balnmp_cache.encoders.Encoder` on ``device`` at ``precision``."""
        spec = encoder.spec
        return cls(
            name=encoder.name, mode=encoder.mode, identifier=encoder.identifier, weights=encoder.weights,
            weights_sha256=encoder.weights_sha256, random_weights=bool(encoder.random_weights),
            input_px=int(spec.input_px), mean=tuple(float(v) for v in spec.mean),  # type: ignore[arg-type]
            std=tuple(float(v) for v in spec.std), feature_dim=int(encoder.feature_dim),  # type: ignore[arg-type]
            device=device, precision=precision, mpp=None if spec.mpp is None else float(spec.mpp),
        )

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> EncoderIdentity:
        values = dict(data)
        values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
        return cls(**values)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "")
    except OSError:
        return platform.processor()
    return hashlib.sha256(flags.encode()).hexdigest()[:16]


def _code_state() -> list[str]:
    from balnmp_cache import __version__

    folder = Path(__file__).resolve().parents[1] / "encoders"
    states = [__version__]
    for path in sorted(folder.glob("*.py")):
        st = path.stat()
        states.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    return states


def _lookup_key(config: ExtractConfig) -> str:
    weights = config.weights if config.weights in ("imagenet", "random") else os.path.abspath(config.weights)
    data = {
        "encoder": config.encoder, "mode": config.mode, "weights": weights, "seed": config.seed,
        "device": config.device, "precision": config.precision,
        "torch": _version("torch"), "torchvision": _version("torchvision"), "code": _code_state(),
        "env": {name: os.environ.get(name, "") for name in _ENV},
        "machine": [platform.machine(), _cpu_flags(), [os.path.exists(node) for node in _GPU_NODES]],
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]


def _file_states(paths: list[str]) -> list[list[Any]] | None:
    states = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            return None
        states.append([path, st.st_size, st.st_mtime_ns])
    return states


def identity_file() -> Path:
    """``$XDG_CACHE_HOME/balnmp_cache/encoder-identities.json`` (``~/.cache`` without the variable)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "balnmp_cache" / "encoder-identities.json"


def _read_records() -> dict[str, Any]:
    try:
        data = json.loads(identity_file().read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _gpu_usable() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def known_identity(config: ExtractConfig) -> EncoderIdentity | None:
    """The identity a previous run recorded for these settings on this machine, if still valid; else ``None``."""
    record = _read_records().get(_lookup_key(config))
    if not isinstance(record, dict):
        return None
    files = record.get("files")
    if not isinstance(files, list) or _file_states([f[0] for f in files]) != files:
        return None
    try:
        identity = EncoderIdentity.from_record(record["identity"])
    except (KeyError, TypeError, ValueError):
        return None
    if identity.device == "cuda" and not _gpu_usable():
        return None
    return identity


def _weights_files(config: ExtractConfig, identity: EncoderIdentity) -> list[str] | None:
    """The files the weights were loaded from (``[]`` for random weights); ``None`` when not known."""
    if identity.random_weights:
        return []
    if identity.weights not in ("imagenet", "random"):
        return [os.path.abspath(identity.weights)]
    from balnmp_cache.encoders import registry

    entry = registry._REGISTRY.get(identity.name)  # the locator the registry itself uses for `doctor`
    locate = getattr(entry, "locate_weights", None)
    if locate is None:
        return None
    found = locate()
    for candidate in (found.detail, found.detail.rpartition(": ")[2]):
        if found.available and os.path.isfile(candidate):
            return [os.path.abspath(candidate)]
    return None


def remember_identity(config: ExtractConfig, identity: EncoderIdentity) -> None:
    """Record ``identity`` for :func:`known_identity` (best effort: an unwritable root only costs time)."""
    paths = _weights_files(config, identity)
    states = None if paths is None else _file_states(paths)
    if states is None:
        return
    records = _read_records()
    records[_lookup_key(config)] = {"identity": asdict(identity), "files": states}
    while len(records) > _MAX_RECORDS:
        records.pop(next(iter(records)))
    try:
        text = json.dumps(records, indent=1, sort_keys=False)
        atomic_write_text(identity_file(), text + "\n")
    except OSError as err:
        log.debug("could not record the encoder identity in %s: %s", identity_file(), err)
