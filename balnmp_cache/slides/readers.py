"""The slide-reader protocol and :func:`open_slide`, which picks a backend from a table by file type.

Backends, in the order tried for each file type (:data:`BACKENDS_BY_SUFFIX`):

- cuCIM first for tiled TIFF and SVS (fastest, batched reads; works on the CPU);
- OpenSlide next (SVS, NDPI, MRXS, SCN, DICOM, generic tiled TIFF);
- tiffslide for what the other two cannot decode (JPEG2000 or WebP tiles, OME-TIFF);
- PIL for plain images (JPEG, PNG, BMP, single-page untiled TIFF), decoded whole.

A backend is accepted only after it has decoded pixels: a few tiny reads of level 0 (top-left and
centre). For SVS and generic/OME TIFF, cuCIM's and OpenSlide's probe pixels are also compared with
tifffile's decode: cuCIM renders the real OME-TIFF test slide in wrong colours and returns black
(printing only to stderr) for tiles it cannot decode. TIFF-based files are checked for truncation
before any backend sees them. MPP and objective power come from
:mod:`balnmp_cache.slides.metadata`, whatever the pixel backend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from balnmp_cache.errors import ConfigError, SlideError

logger = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "BACKENDS_BY_SUFFIX",
    "SlideReader",
    "available_backends",
    "best_level_for_downsample",
    "open_slide",
    "slide_id_for_path",
    "slide_suffix",
]


@runtime_checkable
class SlideReader(Protocol):
    """What the rest of the package needs from a slide; also a context manager.

    Attributes:
        path: the file (for a DICOM folder, the ``.dcm`` file that was opened).
        backend: ``"cucim"``, ``"openslide"``, ``"tiffslide"`` or ``"pil"``.
        dimensions: level-0 (width, height) in pixels.
        level_dimensions: (width, height) of every level, finest first.
        level_downsamples: level-0 pixels per level pixel, for every level.
        mpp: µm per level-0 pixel from the metadata, ``None`` if absent.
        magnification: objective power from the metadata, ``None`` if absent.
    """

    path: Path
    backend: str
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: float | None
    magnification: float | None

    @property
    def dimensions(self) -> tuple[int, int]: ...

    @property
    def level_count(self) -> int: ...

    def read_region(self, level0_xy: tuple[int, int], level: int, size_px: tuple[int, int]) -> np.ndarray:
        """(h, w, 3) uint8 RGB of ``size_px`` = (w, h) level pixels at level-0 top-left ``level0_xy``."""
        ...

    def read_regions(
        self, level0_xys: Sequence[tuple[int, int]], level: int, size_px: tuple[int, int]
    ) -> np.ndarray:
        """(B, h, w, 3) uint8, one region per entry of ``level0_xys``."""
        ...

    def thumbnail(self, max_px: int) -> np.ndarray:
        """(h, w, 3) uint8 of the whole slide, longest side <= ``max_px``."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> SlideReader: ...

    def __exit__(self, *exc_info: object) -> None: ...


BACKENDS: tuple[str, ...] = ("cucim", "openslide", "tiffslide", "pil")

_TIFF_ORDER = ("cucim", "openslide", "tiffslide", "pil")
# OpenSlide cannot open OME-TIFF and cuCIM mis-decodes its colours: tiffslide first.
_OME_ORDER = ("tiffslide", "cucim", "openslide")
_IMAGE_ORDER = ("pil",)

BACKENDS_BY_SUFFIX: dict[str, tuple[str, ...]] = {
    ".svs": ("cucim", "openslide", "tiffslide"),
    ".tif": _TIFF_ORDER,
    ".tiff": _TIFF_ORDER,
    ".ome.tif": _OME_ORDER,
    ".ome.tiff": _OME_ORDER,
    ".ndpi": ("openslide", "tiffslide"),
    ".scn": ("openslide", "tiffslide"),
    ".bif": ("openslide", "tiffslide"),
    ".mrxs": ("openslide",),
    ".vms": ("openslide",),
    ".vmu": ("openslide",),
    ".svslide": ("openslide",),
    ".dcm": ("openslide",),
    ".jpg": _IMAGE_ORDER,
    ".jpeg": _IMAGE_ORDER,
    ".png": _IMAGE_ORDER,
    ".bmp": _IMAGE_ORDER,
}
"""File suffix -> backends to try, in order of preference."""

_TIFF_CONTAINERS = {".svs", ".tif", ".tiff", ".ome.tif", ".ome.tiff", ".ndpi", ".scn", ".bif"}
# cuCIM returns black (and only prints to stderr) for a tile it cannot decode, and mis-renders some
# JPEG colour conventions: its and OpenSlide's probe pixels are compared with tifffile's decode.
_COLOUR_CHECKED = {".svs", ".tif", ".tiff", ".ome.tif", ".ome.tiff"}
_COLOUR_TOLERANCE = 8.0  # mean |difference| in 0..255 between two JPEG decoders; YCbCr mix-ups give ~50
_PROBE_PX = 32


def slide_suffix(path: Path) -> str:
    """The table key of a slide path: ``.ome.tif`` style compound suffixes first, lower case.

    A folder of DICOM files has the key ``.dcm``.
    """
    path = Path(path)
    if path.is_dir():
        return ".dcm"
    name = path.name.lower()
    for compound in (".ome.tif", ".ome.tiff"):
        if name.endswith(compound):
            return compound
    return path.suffix.lower()


def slide_id_for_path(path: Path) -> str:
    """Slide id = file name without its (compound) suffix; a DICOM folder's name."""
    path = Path(path)
    if path.is_dir():
        return path.name
    suffix = slide_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def _backend_classes() -> dict[str, Callable[..., SlideReader]]:
    from balnmp_cache.slides import backends

    return {
        "cucim": backends.CucimReader,
        "openslide": backends.OpenSlideReader,
        "tiffslide": backends.TiffSlideReader,
        "pil": backends.PilReader,
    }


def _dicom_file(folder: Path) -> Path:
    files = sorted(folder.glob("*.dcm"))
    if not files:
        raise SlideError(f"folder {folder} holds no .dcm file; pass a slide file or a DICOM folder")
    return files[0]


def _probe(reader: SlideReader, suffix: str) -> None:
    """Decode a few tiny regions; raise if the backend cannot (or decodes different colours)."""
    width, height = reader.dimensions
    side = min(_PROBE_PX, width, height)
    centre = (max(0, width // 2 - side // 2), max(0, height // 2 - side // 2))
    positions = ((0, 0), centre)
    patches = [reader.read_region(xy, 0, (side, side)) for xy in positions]
    for patch in patches:
        if patch.shape != (side, side, 3) or patch.dtype != np.uint8:
            raise ValueError(f"decoded a {patch.shape} {patch.dtype} array instead of ({side}, {side}, 3) uint8")
    if suffix in _COLOUR_CHECKED and reader.backend in {"cucim", "openslide"}:
        _compare_with_tifffile(reader.path, positions, side, patches)


def _compare_with_tifffile(
    path: Path, positions: Sequence[tuple[int, int]], side: int, patches: Sequence[np.ndarray]
) -> None:
    from balnmp_cache.slides.backends import TiffSlideReader

    try:
        reference = TiffSlideReader(path, num_workers=1)
    except Exception as err:  # no reference decoder: nothing to compare with
        logger.debug("no tifffile reference for %s: %s", path, err)
        return
    with reference:
        for xy, patch in zip(positions, patches, strict=True):
            expected = reference.read_region(xy, 0, (side, side)).astype(np.float32)
            difference = float(np.abs(patch.astype(np.float32) - expected).mean())
            if difference > _COLOUR_TOLERANCE:
                raise ValueError(
                    f"pixels at {xy} differ from tifffile's decode (mean |difference| {difference:.1f} of 255)"
                )


def open_slide(path: Path, *, backend: str | None = None, num_workers: int = 2) -> SlideReader:
    """Open a slide with the first backend (by file type) that can decode its pixels.

    Args:
        path: a slide file, or a folder of DICOM ``.dcm`` files (one slide).
        backend: force one backend (``cucim``, ``openslide``, ``tiffslide``, ``pil``); ``None``
            tries the table :data:`BACKENDS_BY_SUFFIX` in order.
        num_workers: threads for batched reads (:meth:`SlideReader.read_regions`).

    Raises:
        ConfigError: ``backend`` is not a known name.
        SlideError: the file is missing, of an unsupported type, truncated, or no backend could
            decode it; the one-line message names each backend's failure.
    """
    path = Path(path)
    if backend is not None and backend not in BACKENDS:
        raise ConfigError(
            f"unknown slide reader backend {backend!r}; choose one of {', '.join(BACKENDS)} "
            "or leave it unset to choose by file type"
        )
    if not path.exists():
        raise SlideError(f"slide {path} does not exist")
    suffix = slide_suffix(path)
    if suffix not in BACKENDS_BY_SUFFIX:
        raise SlideError(
            f"unsupported slide file type {suffix or '(none)'!r} for {path.name}; "
            f"supported: {', '.join(sorted(BACKENDS_BY_SUFFIX))}"
        )
    file_path = _dicom_file(path) if path.is_dir() else path
    if suffix in _TIFF_CONTAINERS:
        from balnmp_cache.slides.metadata import tiff_problem

        problem = tiff_problem(file_path)
        if problem is not None:
            raise SlideError(f"cannot read {path}: {problem}")
    order = (backend,) if backend is not None else BACKENDS_BY_SUFFIX[suffix]
    classes = _backend_classes()
    failures: list[str] = []
    for name in order:
        reader: SlideReader | None = None
        try:
            reader = classes[name](file_path, num_workers=num_workers)
            _probe(reader, suffix)
        except ImportError as err:
            failures.append(f"{name}: not installed ({err})")
        except Exception as err:  # every backend failure is recorded, the next is tried
            failures.append(f"{name}: {type(err).__name__}: {err}")
        else:
            logger.debug("opened %s with %s (tried %s)", path, name, ", ".join(order))
            return reader
        if reader is not None:
            reader.close()
        logger.debug("backend %s failed on %s: %s", name, path, failures[-1])
    reasons = "; ".join(" ".join(failure.split()) for failure in failures)
    raise SlideError(f"cannot read {path}: {reasons}")


def available_backends() -> dict[str, str]:
    """Backend name -> ``"ok <version>"`` or ``"unavailable: <import error>"`` (for ``doctor``)."""
    import importlib

    from balnmp_cache.slides import backends

    modules = {"cucim": "cucim", "openslide": "openslide", "tiffslide": "tiffslide", "pil": "PIL"}
    report: dict[str, str] = {}
    for name, module_name in modules.items():
        try:
            module = backends.import_cucim() if name == "cucim" else importlib.import_module(module_name)
        except Exception as err:  # a broken install is reported, not raised
            report[name] = f"unavailable: {type(err).__name__}: {err}"
            continue
        version = str(getattr(module, "__version__", "unknown"))
        if name == "openslide":
            version += f" (library {getattr(module, '__library_version__', 'unknown')})"
        report[name] = f"ok {version}"
    return report


def best_level_for_downsample(reader: SlideReader, downsample: float) -> int:
    """The coarsest level whose downsample is at most ``downsample`` (1 % tolerance).

    Reading at that level and then resizing down never upsamples. Levels of real pyramids are
    rarely exact powers of two (e.g. 2.0005), hence the tolerance.
    """
    best = 0
    for level, level_downsample in enumerate(reader.level_downsamples):
        if level_downsample <= downsample * 1.01 and level_downsample >= reader.level_downsamples[best]:
            best = level
    return best
