"""What ``balnmp-cache extract SOURCE...`` accepts, resolved into one :class:`SlideJob` per slide.

A SOURCE is any of:

- a slide file (any suffix of :data:`~balnmp_cache.slides.readers.BACKENDS_BY_SUFFIX`);
- a folder of slides (its direct children; a sub-folder of ``.dcm`` files is one DICOM slide; a
  folder that itself holds ``.dcm`` files is one DICOM slide);
- the root of a BCNB download (has ``WSIs/``; ``prefer="pyramidal"`` takes ``WSIs-pyramidal/``
  when present);
- BCNB pre-cut patches: a folder holding ``patches/<pid>/<pid>_<region>_<x>_<y>.jpg`` or that
  ``patches`` folder itself; one job per patient, ``kind="patches"``;
- a manifest CSV with columns ``slide_path``, ``patient_id`` and optional ``annotation_path``,
  ``mpp`` (relative paths are resolved against the CSV's folder).

Slide id = file name without suffix (BCNB: the patient id); patient id = slide id except in a
manifest. An annotation is looked up beside each slide (:func:`find_annotation`).
"""

from __future__ import annotations

import csv
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from balnmp_cache.errors import ConfigError
from balnmp_cache.slides.annotations import find_annotation
from balnmp_cache.slides.readers import BACKENDS_BY_SUFFIX, slide_id_for_path, slide_suffix
from balnmp_cache.sorting import natural_key

logger = logging.getLogger(__name__)

__all__ = ["SlideJob", "parse_patch_name", "patch_key", "resolve_sources"]

PATCH_NAME = re.compile(r"^(?P<pid>[^_/]+)_(?P<region>\d+)_(?P<x>\d+)_(?P<y>\d+)\.jpe?g$", re.IGNORECASE)
MANIFEST_COLUMNS = ("slide_path", "patient_id")
_PREFER = ("jpeg", "pyramidal")


@dataclass(frozen=True)
class SlideJob:
    """One unit of work for stage 1.

    Attributes:
        slide_id: file stem (BCNB: the patient id); unique within a run.
        patient_id: the patient the slide belongs to.
        path: the slide file, DICOM folder, or (``kind="patches"``) the patient's patch folder.
        kind: ``"slide"`` (tile it) or ``"patches"`` (pre-cut BCNB patch JPEGs).
        annotation: polygon file for the slide, ``None`` if there is none (tissue detection).
        mpp: µm per level-0 pixel from a manifest, ``None`` otherwise.
        patch_files: ``kind="patches"`` only: the patch JPEGs, sorted by (region, y, x).
    """

    slide_id: str
    patient_id: str
    path: Path
    kind: Literal["slide", "patches"]
    annotation: Path | None
    mpp: float | None
    patch_files: tuple[Path, ...] = ()


def parse_patch_name(path: Path) -> tuple[str, int, int, int]:
    """``<pid>_<region>_<x>_<y>.jpg`` -> (pid, region id, x offset, y offset) in the region's bbox crop.

    Raises:
        ConfigError: the name does not follow the official pattern.
    """
    match = PATCH_NAME.match(Path(path).name)
    if match is None:
        raise ConfigError(f"patch file {path} is not named <pid>_<region>_<x>_<y>.jpg like the BCNB patches")
    return match["pid"], int(match["region"]), int(match["x"]), int(match["y"])


def patch_key(path: Path) -> str:
    """The official relative path of a pre-cut patch, ``patches/<pid>/<file name>``."""
    path = Path(path)
    return f"patches/{path.parent.name}/{path.name}"


def _slide_job(
    path: Path, *, patient_id: str | None = None, annotation: Path | None = None, mpp: float | None = None
) -> SlideJob:
    slide_id = slide_id_for_path(path)
    return SlideJob(
        slide_id=slide_id,
        patient_id=patient_id if patient_id is not None else slide_id,
        path=path,
        kind="slide",
        annotation=annotation if annotation is not None else find_annotation(path),
        mpp=mpp,
    )


def _is_dicom_folder(folder: Path) -> bool:
    return any(folder.glob("*.dcm"))


# Whole-slide formats no installed reader opens: listed as slides so that each gets a manifest row
# saying so, instead of vanishing from the run.
UNSUPPORTED_SLIDE_SUFFIXES = (".czi", ".vsi", ".isyntax", ".scn", ".svslide", ".bif", ".qptiff", ".kfb", ".sdpc")


def _folder_of_slides(folder: Path) -> list[SlideJob]:
    jobs = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue  # hidden files: macOS AppleDouble "._x.jpg", editors' temporaries
        if child.is_dir():
            if _is_dicom_folder(child):
                jobs.append(_slide_job(child))
        elif slide_suffix(child) in BACKENDS_BY_SUFFIX or slide_suffix(child) in UNSUPPORTED_SLIDE_SUFFIXES:
            jobs.append(_slide_job(child))
    if not jobs:
        raise ConfigError(
            f"no slides found in folder {folder}; expected files ending in {', '.join(sorted(BACKENDS_BY_SUFFIX))}, "
            "a BCNB root (WSIs/), a patches/ folder or a manifest .csv"
        )
    return jobs


def _patch_jobs(patches_dir: Path) -> list[SlideJob]:
    jobs = []
    for patient_dir in sorted(p for p in patches_dir.iterdir() if p.is_dir()):
        files = []
        for file in patient_dir.iterdir():
            match = PATCH_NAME.match(file.name)
            if match is None:
                if file.is_file():
                    logger.warning("skipping %s: not named <pid>_<region>_<x>_<y>.jpg", file)
                continue
            files.append((int(match["region"]), int(match["y"]), int(match["x"]), file))
        if not files:
            continue
        pid = patient_dir.name
        ordered = tuple(file for *_, file in sorted(files))
        jobs.append(SlideJob(pid, pid, patient_dir, "patches", None, None, ordered))
    if not jobs:
        raise ConfigError(f"no BCNB patch JPEGs (<pid>/<pid>_<region>_<x>_<y>.jpg) found under {patches_dir}")
    return jobs


def _bcnb_root(root: Path, prefer: str) -> list[SlideJob]:
    jpeg_dir, pyramid_dir = root / "WSIs", root / "WSIs-pyramidal"
    order = (jpeg_dir, pyramid_dir) if prefer == "jpeg" else (pyramid_dir, jpeg_dir)
    chosen = next(folder for folder in order if folder.is_dir())
    if chosen != order[0]:
        logger.info("%s has no %s/; using %s/", root, order[0].name, chosen.name)
    return _folder_of_slides(chosen)


def _optional_float(text: str, *, csv_path: Path, line: int, column: str) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ConfigError(f"{csv_path} line {line}: {column} must be a positive number of µm per pixel, got {text!r}")
    return value


def _manifest(csv_path: Path) -> list[SlideJob]:
    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in MANIFEST_COLUMNS if c not in columns]
        if missing:
            raise ConfigError(
                f"manifest {csv_path} lacks column(s) {', '.join(missing)}; it has {', '.join(columns) or 'none'}. "
                "Required: slide_path, patient_id; optional: annotation_path, mpp"
            )
        reader.fieldnames = columns
        jobs = []
        for line, row in enumerate(reader, start=2):
            values = {key: (value or "").strip() for key, value in row.items() if key is not None}
            if not values.get("slide_path") or not values.get("patient_id"):
                raise ConfigError(f"{csv_path} line {line}: slide_path and patient_id must not be empty")
            slide = (csv_path.parent / values["slide_path"]).resolve()
            if not slide.exists():
                raise ConfigError(
                    f"{csv_path} line {line}: slide_path {values['slide_path']!r} does not exist ({slide})"
                )
            annotation = None
            if values.get("annotation_path"):
                annotation = (csv_path.parent / values["annotation_path"]).resolve()
                if not annotation.is_file():
                    raise ConfigError(
                        f"{csv_path} line {line}: annotation_path {values['annotation_path']!r} "
                        f"does not exist ({annotation})"
                    )
            mpp = _optional_float(values.get("mpp", ""), csv_path=csv_path, line=line, column="mpp")
            jobs.append(_slide_job(slide, patient_id=values["patient_id"], annotation=annotation, mpp=mpp))
    if not jobs:
        raise ConfigError(f"manifest {csv_path} has no rows")
    return jobs


def _resolve_one(source: Path, prefer: str) -> list[SlideJob]:
    if not source.exists():
        raise ConfigError(f"SOURCE {source} does not exist")
    if source.is_file():
        if source.suffix.lower() == ".csv":
            return _manifest(source)
        known = slide_suffix(source) in BACKENDS_BY_SUFFIX or slide_suffix(source) in UNSUPPORTED_SLIDE_SUFFIXES
        if known and source.suffix.lower() != ".dcm":
            return [_slide_job(source)]
        if source.suffix.lower() == ".dcm":
            return [_slide_job(source.parent)]
        raise ConfigError(
            f"SOURCE {source} is not a slide or a manifest .csv; "
            f"slide suffixes are {', '.join(sorted(BACKENDS_BY_SUFFIX))}"
        )
    if (source / "WSIs").is_dir() or (source / "WSIs-pyramidal").is_dir():
        return _bcnb_root(source, prefer)
    if source.name == "patches":
        return _patch_jobs(source)
    if (source / "patches").is_dir():
        return _patch_jobs(source / "patches")
    if _is_dicom_folder(source):
        return [_slide_job(source)]
    return _folder_of_slides(source)


def resolve_sources(sources: Sequence[Path], *, prefer: Literal["jpeg", "pyramidal"] = "jpeg") -> list[SlideJob]:
    """Turn SOURCE arguments into slide jobs, sorted by slide id (natural order: 2 before 10).

    Args:
        sources: slide files, folders, BCNB roots, patch folders or manifest CSVs.
        prefer: for a BCNB root, ``"jpeg"`` reads ``WSIs/``, ``"pyramidal"`` ``WSIs-pyramidal/``.

    Raises:
        ConfigError: a SOURCE does not exist or holds nothing usable, a manifest is malformed (the
            message names the CSV line), or two slides share an id (all duplicates are listed).
    """
    if prefer not in _PREFER:
        raise ConfigError(f"prefer must be one of {', '.join(_PREFER)}, got {prefer!r} (--prefer)")
    if not sources:
        raise ConfigError("no SOURCE given; pass slide files, folders, a BCNB root or a manifest CSV")
    jobs = [job for source in sources for job in _resolve_one(Path(source), prefer)]
    by_id: dict[str, list[Path]] = defaultdict(list)
    for job in jobs:
        by_id[job.slide_id].append(job.path)
    duplicates = {slide_id: paths for slide_id, paths in by_id.items() if len(paths) > 1}
    if duplicates:
        listing = "; ".join(
            f"{slide_id}: {', '.join(map(str, paths))}" for slide_id, paths in sorted(duplicates.items())
        )
        raise ConfigError(f"duplicate slide ids (slide ids are file stems and must be unique): {listing}")
    return sorted(jobs, key=lambda job: natural_key(job.slide_id))
