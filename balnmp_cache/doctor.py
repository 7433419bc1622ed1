"""Environment checks for ``balnmp-cache doctor``: what works here, and how to fix what does not."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from balnmp_cache.encoders import WeightsAvailability

__all__ = ["Check", "run_checks"]

Status = Literal["ok", "warn", "missing"]


@dataclass(frozen=True)
class Check:
    """One line of the doctor's table.

    Attributes:
        name: what was checked.
        status: ``ok``, ``warn`` (works, with a caveat) or ``missing``.
        detail: versions or the failure seen.
        fix: what to do about a warn/missing status.
        required: whether the pipeline cannot run without it.
    """

    name: str
    status: Status
    detail: str
    fix: str = ""
    required: bool = False


_PACKAGES: tuple[tuple[str, str, bool, str], ...] = (
    # (distribution, import name, required, fix)
    ("torch", "torch", True, "pip install 'torch==2.14.1' (make install does it)"),
    ("torchvision", "torchvision", True, "pip install 'torchvision==0.29.1'"),
    ("h5py", "h5py", True, "pip install h5py"),
    ("zarr", "zarr", False, "pip install 'zarr>=3,<3.2' for --format zarr"),
    ("numpy", "numpy", True, "pip install numpy"),
    ("scikit-learn", "sklearn", True, "pip install scikit-learn"),
    ("imagecodecs", "imagecodecs", False, "pip install imagecodecs (JPEG2000/WebP tiles through tiffslide)"),
    ("timm", "timm", False, "pip install 'timm>=1.0.31' (make install does it) for foundation-model and timm encoders"),
    ("huggingface_hub", "huggingface_hub", False, "pip install 'huggingface_hub>=1.0' (reads the local hub cache)"),
    ("safetensors", "safetensors", False, "pip install safetensors (the hub's weight files)"),
    ("transformers", "transformers", False, "pip install 'transformers>=5.0' for phikon_v2"),
)


def _package_checks() -> list[Check]:
    checks = [Check("python", "ok", f"{platform.python_version()} ({platform.machine()})")]
    try:
        checks.append(Check("balnmp-cache", "ok", importlib.metadata.version("balnmp-cache")))
    except importlib.metadata.PackageNotFoundError:
        checks.append(Check("balnmp-cache", "warn", "running from source, not installed", "make install"))
    for dist, module, required, fix in _PACKAGES:
        try:
            importlib.import_module(module)
            checks.append(Check(dist, "ok", importlib.metadata.version(dist), required=required))
        except Exception as err:  # a broken install can raise anything on import
            checks.append(Check(dist, "missing", f"{type(err).__name__}: {err}", fix, required=required))
    return checks


def _gpu_check() -> Check:
    try:
        import torch
    except Exception as err:
        return Check("GPU", "missing", f"torch unavailable: {err}", "make install")
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return Check("GPU", "ok", f"{torch.cuda.device_count()} × {name}, CUDA {torch.version.cuda}")
    return Check(
        "GPU",
        "warn",
        "no CUDA device: extraction and training run on the CPU",
        "fine for the demo and small encoders; use a CUDA machine for vgg16_bn at BCNB scale",
    )


def _reader_checks() -> list[Check]:
    try:
        from balnmp_cache.slides.readers import available_backends
    except ImportError as err:
        return [Check("slide readers", "missing", str(err), "make install", required=True)]
    fixes = {
        "cucim": "pip install cucim-cu13 (tiled TIFF/SVS, fastest)",
        "openslide": "pip install openslide-python openslide-bin (SVS, NDPI, MRXS, DICOM)",
        "tiffslide": "pip install tiffslide imagecodecs (JPEG2000/WebP tiles, OME-TIFF)",
        "pil": "pip install pillow (plain JPEG/PNG such as the BCNB slides)",
    }
    checks = []
    for name, state in available_backends().items():
        ok = state.startswith("ok")
        fix = "" if ok else fixes.get(name, "")
        checks.append(Check(f"reader: {name}", "ok" if ok else "missing", state, fix, required=name == "pil"))
    return checks


def _hub_cache_check() -> Check:
    """Where hub weights are looked for (the foundation models', ``timm:``, ``hf-hub:``); nothing is downloaded."""
    import os

    from balnmp_cache.encoders.hub import hub_cache_dir

    where = hub_cache_dir()
    source = next((f"${key}" for key in ("HF_HUB_CACHE", "HF_HOME") if os.environ.get(key)), "default")
    detail = f"{where} ({source}; {'exists' if where.is_dir() else 'does not exist'}); weights are read, never fetched"
    fix = "" if where.is_dir() else "set HF_HOME or HF_HUB_CACHE to the copied cache (docs/encoders.md)"
    return Check("Hugging Face cache", "ok" if where.is_dir() else "warn", detail, fix)


def _weights_check(name: str, found: WeightsAvailability | None, source: str) -> Check:
    """One registered encoder: whether its published weights are on this machine, and where it looks."""
    label = f"weights: {name}"
    if found is None:
        return Check(label, "warn", f"unknown ({source})", "--weights random works without any file")
    if found.available:
        return Check(label, "ok", f"available offline ({found.detail})")
    if found.fix:  # hub weights: the files looked for (under the cache of the row above), then how to get them
        from balnmp_cache.encoders.hub import hub_cache_dir

        looked = found.detail.replace(f"{hub_cache_dir()}/", "<cache>/")
        return Check(label, "warn", f"not in the Hugging Face cache: {looked}", found.fix)
    return Check(label, "warn", "not available offline", found.detail)  # detail: a URL and a path, or a command


def _weights_checks() -> list[Check]:
    try:
        from balnmp_cache.encoders import get_spec, weights_availability, weights_status
    except ImportError as err:
        return [Check("encoder weights", "missing", str(err), "make install", required=True)]
    checks = [_hub_cache_check()]
    for name, found in weights_availability().items():
        checks.append(_weights_check(name, found, get_spec(name).weights_source))
    hub = "timm:* / hf-hub:*"
    state = weights_status()[hub]
    if state.startswith("missing: "):
        checks.append(Check(f"weights: {hub}", "missing", "timm is not installed", state.removeprefix("missing: ")))
    else:
        checks.append(Check(f"weights: {hub}", "ok", state.removeprefix("available ")))
    return checks


def _heads_check() -> Check:
    """The registered MIL heads: the valid values of ``--head`` (listing them imports torch)."""
    try:
        from balnmp_cache.mil import list_heads
    except ImportError as err:
        return Check("MIL heads", "missing", str(err), "make install", required=True)
    return Check("MIL heads", "ok", ", ".join(list_heads()))


def _disk_check(path: Path) -> Check:
    free_gib = shutil.disk_usage(path).free / 2**30
    status: Status = "ok" if free_gib > 10 else "warn"
    fix = "" if status == "ok" else "a BCNB cache of 25,088-d features needs ~4 GB"
    return Check("disk", status, f"{free_gib:.1f} GiB free at {path.resolve()}", fix)


def run_checks(cwd: Path | None = None) -> list[Check]:
    """Run every check; never raises."""
    return [
        *_package_checks(),
        _gpu_check(),
        *_reader_checks(),
        *_weights_checks(),
        _heads_check(),
        _disk_check(cwd or Path.cwd()),
    ]
