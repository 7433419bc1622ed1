"""Environment checks for ``balnmp-cache doctor``: what works here, and how to fix what does not."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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
    ("timm", "timm", False, "optional: pip install 'balnmp-cache[timm]' for timm:<model> encoders"),
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


def _weights_checks() -> list[Check]:
    try:
        from balnmp_cache.encoders import weights_status
    except ImportError as err:
        return [Check("encoder weights", "missing", str(err), "make install", required=True)]
    checks = []
    for name, state in weights_status().items():
        if state.startswith("available"):
            checks.append(Check(f"weights: {name}", "ok", state))
        elif state.startswith("missing: "):  # the rest says how to provide them: a URL and a path, or a command
            checks.append(Check(f"weights: {name}", "warn", "not available offline", state.removeprefix("missing: ")))
        else:
            checks.append(Check(f"weights: {name}", "warn", state, "--weights random works without any file"))
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
