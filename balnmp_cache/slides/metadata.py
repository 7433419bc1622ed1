"""Slide metadata that the pixel backends get wrong or do not check: MPP, objective power, truncation.

The pixel backend and the metadata source are chosen separately. cuCIM reports 1.0 µm/px for every
Aperio SVS (it does not parse ``MPP =`` from the description), so MPP and magnification always come
from OpenSlide's ``openslide.mpp-x`` / ``openslide.objective-power`` properties when OpenSlide can open
the file, and otherwise from tiffslide's ``tiffslide.mpp-x`` / ``tiffslide.objective-power``, which
tifffile derives from the Aperio description (``MPP =``, ``AppMag =``), OME-XML ``PhysicalSizeX`` or the
TIFF resolution tags (unit CENTIMETER, INCH, MILLIMETER or MICROMETER; unit NONE gives no MPP).
Nothing found means ``None``: no default is ever invented.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["dicom_needs_ycbcr_fix", "properties_mpp_magnification", "slide_mpp_magnification", "tiff_problem"]

# Plausible range for µm per level-0 pixel: anything outside is a placeholder (e.g. 72 dpi, or 0).
_MPP_RANGE = (0.01, 100.0)
_JPEG_BASELINE_SYNTAX = "1.2.840.10008.1.2.4.50"


def _positive_float(value: Any, low: float, high: float) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or not low <= number <= high:
        return None
    return number


def properties_mpp_magnification(props: Mapping[str, Any], prefix: str) -> tuple[float | None, float | None]:
    """Read ``<prefix>.mpp-x`` and ``<prefix>.objective-power`` from a property map.

    Args:
        props: OpenSlide-style properties.
        prefix: ``"openslide"`` or ``"tiffslide"``.

    Returns:
        (mpp in µm per level-0 pixel, objective power); either is ``None`` when absent or implausible.
    """
    mpp = _positive_float(props.get(f"{prefix}.mpp-x"), *_MPP_RANGE)
    magnification = _positive_float(props.get(f"{prefix}.objective-power"), 0.1, 1000.0)
    return mpp, magnification


def _openslide_properties(path: Path) -> Mapping[str, Any] | None:
    try:
        import openslide

        with openslide.OpenSlide(str(path)) as slide:
            return dict(slide.properties)
    except Exception as err:  # any failure means "no metadata from this source"
        logger.debug("OpenSlide metadata unavailable for %s: %s", path, err)
        return None


def _tiffslide_properties(path: Path) -> Mapping[str, Any] | None:
    try:
        import warnings

        import tiffslide

        with warnings.catch_warnings():
            # tiffslide warns that some vendor parsers are partial; the fields used here are parsed.
            warnings.simplefilter("ignore", UserWarning)
            with tiffslide.TiffSlide(str(path)) as slide:
                return dict(slide.properties)
    except Exception as err:
        logger.debug("tiffslide metadata unavailable for %s: %s", path, err)
        return None


def slide_mpp_magnification(
    path: Path, *, openslide_props: Mapping[str, Any] | None = None
) -> tuple[float | None, float | None]:
    """MPP and objective power of a slide, from the first metadata source that has each.

    Args:
        path: the slide file (for DICOM, one of its ``.dcm`` files).
        openslide_props: properties of an already open OpenSlide handle, to avoid reopening.

    Returns:
        (mpp in µm per level-0 pixel or ``None``, objective power or ``None``).
    """
    mpp: float | None = None
    magnification: float | None = None
    sources = (
        (lambda: openslide_props if openslide_props is not None else _openslide_properties(path), "openslide"),
        (lambda: _tiffslide_properties(path), "tiffslide"),
    )
    for fetch, prefix in sources:
        props = fetch()
        if props is None:
            continue
        found_mpp, found_mag = properties_mpp_magnification(props, prefix)
        mpp = mpp if mpp is not None else found_mpp
        magnification = magnification if magnification is not None else found_mag
        if mpp is not None and magnification is not None:
            break
    return mpp, magnification


def tiff_problem(path: Path) -> str | None:
    """Check that a TIFF-based slide is complete: an intact IFD chain and all pixel data inside the file.

    A truncated download often still opens (the level-0 tiles may come first) and then fails or
    returns garbage deep inside a read; this check catches it up front.

    Returns:
        ``None`` when the file looks complete, else a one-line reason.
    """
    import tifffile

    size = path.stat().st_size
    try:
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages
            count = len(pages)
            if count == 0:
                return "no readable TIFF page (truncated or not a TIFF file)"
            handle = tif.filehandle
            raw = b""
            if pages.next_page_offset is not None:  # where the last page's "next IFD" offset is stored
                handle.seek(pages.next_page_offset)
                raw = handle.read(tif.tiff.offsetsize)
            if len(raw) < tif.tiff.offsetsize or struct.unpack(tif.tiff.offsetformat, raw)[0] != 0:
                return f"the TIFF directory chain is broken after page {count - 1} (truncated file?)"
            for index in range(count):
                page = pages[index]
                # A damaged page may list fewer byte counts than offsets: check the pairs it has.
                pairs = zip(page.dataoffsets, page.databytecounts, strict=False)
                ends = [offset + nbytes for offset, nbytes in pairs if nbytes]
                if ends and max(ends) > size:
                    return f"page {index} needs {max(ends)} bytes but the file has {size} (truncated file?)"
    except Exception as err:  # tifffile raises many types for damaged files
        return f"not a readable TIFF ({type(err).__name__}: {err})".replace("\n", " ")
    return None


def dicom_needs_ycbcr_fix(props: Mapping[str, Any], path: Path) -> bool:
    """Whether OpenSlide will return raw YCbCr values as RGB for this DICOM slide.

    Some converters write JFIF (YCbCr-coded) JPEG frames but declare PhotometricInterpretation RGB.
    OpenSlide trusts the header and skips the colour conversion; a decoder that honours JFIF converts.
    Detected as: vendor ``dicom``, PhotometricInterpretation ``RGB``, JPEG baseline transfer syntax,
    and a first JPEG frame that carries a JFIF APP0 marker and no Adobe APP14 marker.
    """
    if props.get("openslide.vendor") != "dicom":
        return False
    if str(props.get("dicom.PhotometricInterpretation", "")).strip() != "RGB":
        return False
    if str(props.get("dicom.TransferSyntaxUID", "")).strip() != _JPEG_BASELINE_SYNTAX:
        return False
    with path.open("rb") as handle:
        data = handle.read(4 * 1024 * 1024)
    start = data.find(b"\xff\xd8\xff")
    if start < 0:
        return False
    header = data[start : start + 4096]
    return b"JFIF\x00" in header[:64] and b"Adobe" not in header
