"""``write_demo_cohort``: a synthetic cohort in the exact layout of the BCNB release.

::

    OUT/
        WSIs/<id>.jpg                 single-resolution RGB JPEG (quality 90), no MPP metadata, ids 1..N
        WSIs/<id>.json                tumour polygons {"positive": [{"name", "vertices"}], "negative": []}
        WSIs-pyramidal/<id>.tiff      the same slides as JPEG-tiled pyramidal TIFF, MPP 0.5 (pyramidal=True)
        WSIs-pyramidal/<id>.json      the same polygons
        patient-clinical-data.xlsx    BCNB's 14 raw clinical columns
        dataset-splitting/{train,val,test}_id.txt
        README.txt                    what this is and the planted signal
        demo-cohort.json              the generator's arguments and per-patient facts (not part of BCNB)

Every patient has its own random streams (``numpy.random.default_rng([seed, patient_id, k])``), so slides
do not depend on the order or the threads that generate them; the cohort-level stream ``[seed, 0, 0]`` draws
the labels and the split.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from balnmp_cache.demo import planted
from balnmp_cache.demo.clinical import assign_labels, assign_splits, clinical_row, write_clinical, write_splits
from balnmp_cache.demo.layout import official_patches, plan_slide
from balnmp_cache.demo.pyramid import write_pyramidal_tiff
from balnmp_cache.demo.readme import readme_text
from balnmp_cache.demo.render import render_slide
from balnmp_cache.errors import ConfigError
from balnmp_cache.fsio import atomic_path, atomic_write_text
from balnmp_cache.outdir import naming_errors
from balnmp_cache.progress import ProgressCallback, emit

__all__ = ["DEFAULT_PATIENTS", "MARKER", "DemoSummary", "check_arguments", "write_demo_cohort"]

log = logging.getLogger(__name__)

DEFAULT_PATIENTS = 120
"""Default cohort size: about 2,900 official 256-px tumour patches, generated in well under a minute."""

MARKER = "demo-cohort.json"
"""File that identifies a folder as a demo cohort and records the arguments it was written with."""

_FORMAT_VERSION = 1
_JPEG_QUALITY = 90
_HIGH_GRADE_PATCH = 0.3  # a patch counts as high-grade when >= 30% of its pixels lie in a high-grade field


@dataclass(frozen=True)
class DemoSummary:
    """What :func:`write_demo_cohort` wrote.

    Attributes:
        root: the cohort folder.
        n_patients: number of patients (ids 1..n_patients).
        class_counts: patients per ALN status (``N0``, ``N+(1-2)``, ``N+(>2)``).
        split_counts: patients per split (``train``, ``val``, ``test``).
        n_slides_jpeg: JPEG slides written to ``WSIs/``.
        n_slides_tiff: pyramidal TIFF slides written to ``WSIs-pyramidal/`` (0 when not requested).
        seconds: wall-clock time of the generation.
        n_patches: tumour patches the official tiling rule yields over all JPEG slides.
    """

    root: Path
    n_patients: int
    class_counts: dict[str, int]
    split_counts: dict[str, int]
    n_slides_jpeg: int
    n_slides_tiff: int
    seconds: float
    n_patches: int = 0


def check_arguments(out: Path, patients: int, seed: int) -> None:
    """Refuse a bad ``patients`` (fewer than 3, not an integer), ``seed`` or an ``out`` that is a file.

    Raises:
        ConfigError: naming the value and the flag to change.
    """
    if isinstance(patients, bool) or not isinstance(patients, int) or patients < 3:
        raise ConfigError(f"--patients {patients!r} is invalid: the demo cohort needs at least 3 patients "
                          f"(one per ALN status); pass --patients 3 or more, or leave it out for {DEFAULT_PATIENTS}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed={seed!r} is invalid: use a non-negative integer; change --seed")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; the demo cohort needs an empty or new folder")


def _guard_folder(out: Path, arguments: dict[str, Any]) -> None:
    """Refuse a non-empty folder unless it is a demo cohort written with the same arguments.

    Log files (``*.log``, such as the CLI's ``demo-data.log`` opened before generation starts) do not count.
    """
    if not out.exists() or all(p.suffix == ".log" and p.is_file() for p in out.iterdir()):
        return
    marker = out / MARKER
    if not marker.is_file():
        raise ConfigError(f"--out {out} is not empty and is not a demo cohort (no {MARKER}); "
                          f"choose a new or empty folder")
    try:
        previous = json.loads(marker.read_text(encoding="utf-8")).get("arguments")
    except (OSError, ValueError, AttributeError) as err:
        raise ConfigError(f"--out {out} holds an unreadable {MARKER}; choose a new or empty folder") from err
    if previous != arguments:
        raise ConfigError(f"--out {out} already holds a demo cohort written with {previous}, not {arguments}; "
                          f"pass the same --patients/--seed/--pyramidal to rewrite it, or choose a new folder")
    log.info("rewriting the demo cohort in %s (same arguments)", out)


def _write_marker(out: Path, content: dict[str, Any]) -> None:
    atomic_write_text(out / MARKER, json.dumps(content, indent=1) + "\n")


def _patient_plan(seed: int, patient_id: int, aln_status: str) -> tuple[int, float, bool]:
    """Target patch count, high-grade area fraction and occult flag of one patient."""
    rng = np.random.default_rng([seed, patient_id, 2])
    n_target = int(np.clip(round(math.exp(rng.normal(math.log(20), 0.55))), 10, 66))
    occult = aln_status != "N0" and rng.random() < planted.OCCULT_RATE
    a, b = planted.HIGH_GRADE_BETA["N0" if occult else aln_status]
    return n_target, float(rng.beta(a, b)), bool(occult)


def _write_slide(out: Path, seed: int, patient_id: int, aln_status: str, pyramidal: bool) -> dict[str, Any]:
    """Generate and write one patient's slide(s) and annotation(s); returns its facts for the marker."""
    n_target, fraction, occult = _patient_plan(seed, patient_id, aln_status)
    layout = plan_slide(np.random.default_rng([seed, patient_id, 3]), n_target=n_target,
                        high_grade_fraction=fraction, overhang=patient_id == 1 or (patient_id % 17 == 5))
    rgb, high, tumour = render_slide(np.random.default_rng([seed, patient_id, 4]), layout)

    annotation = {
        "positive": [{"name": f"Annotation {i}", "vertices": poly.tolist()} for i, poly in enumerate(layout.regions)],
        "negative": [],
    }
    text = json.dumps(annotation)
    folders = [out / "WSIs"] + ([out / "WSIs-pyramidal"] if pyramidal else [])
    for folder in folders:
        (folder / f"{patient_id}.json").write_text(text, encoding="utf-8")
    with atomic_path(out / "WSIs" / f"{patient_id}.jpg") as tmp:  # a hidden name no slide scanner picks up
        Image.fromarray(rgb).save(tmp, format="JPEG", quality=_JPEG_QUALITY)
    if pyramidal:
        write_pyramidal_tiff(out / "WSIs-pyramidal" / f"{patient_id}.tiff", rgb, mpp=planted.MPP)

    patches = official_patches(layout.regions, layout.width, layout.height)
    size = planted.PATCH_PX
    high_patches = sum(
        int(high[y : y + size, x : x + size].sum()) >= _HIGH_GRADE_PATCH * size * size for _, x, y in patches
    )
    tumour_px = int(tumour.sum())
    return {
        "aln_status": aln_status,
        "width": layout.width,
        "height": layout.height,
        "n_regions": len(layout.regions),
        "n_patches": len(patches),
        "occult": occult,
        "high_grade_target": round(fraction, 4),
        "high_grade_area_fraction": round(int(high.sum()) / max(tumour_px, 1), 4),
        "high_grade_patch_fraction": round(high_patches / max(len(patches), 1), 4),
        "high_grade_fields": layout.fields.tolist(),
    }


def write_demo_cohort(out: Path, *, patients: int = DEFAULT_PATIENTS, seed: int = 0, pyramidal: bool = True,
                      progress: ProgressCallback | None = None) -> DemoSummary:
    """Write a synthetic BCNB-shaped cohort with a planted, documented histological signal.

    The folder must be new or empty (log files ``*.log`` aside), or hold a demo cohort written earlier with
    the same ``patients``, ``seed`` and ``pyramidal``: then its files are overwritten with identical content
    (which also completes an interrupted run). Anything else is refused, so two cohorts are never mixed.

    Args:
        out: the cohort folder (created if missing).
        patients: number of patients, ids 1..patients (at least 3).
        seed: the random seed; the same seed writes byte-identical slides and annotations.
        pyramidal: also write ``WSIs-pyramidal/<id>.tiff`` (JPEG-tiled pyramid with MPP 0.5).
        progress: receives ``start``/``advance``/``end`` events of the task ``"patients"``.

    Returns:
        A summary of what was written.

    Raises:
        ConfigError: bad ``patients`` or ``seed``, or ``out`` is a file, a non-empty folder that is not a demo
            cohort, or a demo cohort written with other arguments.
    """
    started = time.perf_counter()
    out = Path(out)
    check_arguments(out, patients, seed)
    arguments = {"patients": patients, "seed": seed, "pyramidal": bool(pyramidal)}
    _guard_folder(out, arguments)
    with naming_errors(out):  # a full disk: the one-line error names the cohort folder
        return _write_cohort(out, arguments, started, progress)


def _write_cohort(out: Path, arguments: dict[str, Any], started: float,
                  progress: ProgressCallback | None) -> DemoSummary:
    """:func:`write_demo_cohort` once the arguments and the folder are checked."""
    patients, seed, pyramidal = arguments["patients"], arguments["seed"], arguments["pyramidal"]
    for folder in ("WSIs", "dataset-splitting") + (("WSIs-pyramidal",) if pyramidal else ()):
        (out / folder).mkdir(parents=True, exist_ok=True)
    marker = {"generator": "balnmp_cache.demo", "format_version": _FORMAT_VERSION, "arguments": arguments,
              "complete": False}
    _write_marker(out, marker)

    cohort_rng = np.random.default_rng([seed, 0, 0])
    labels = assign_labels(cohort_rng, patients)
    split = assign_splits(cohort_rng, labels)
    rows = [clinical_row(np.random.default_rng([seed, pid, 1]), pid, label)
            for pid, label in enumerate(labels, start=1)]

    log.info("writing a demo cohort of %d patients (seed %d) to %s", patients, seed, out)
    emit(progress, "start", "patients", total=patients)
    facts: dict[int, dict[str, Any]] = {}
    workers = max(1, min(2, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pid: pool.submit(_write_slide, out, seed, pid, label, pyramidal)
                   for pid, label in enumerate(labels, start=1)}
        for pid, future in futures.items():
            facts[pid] = future.result()
            emit(progress, "advance", "patients", steps=1, info={"patches": facts[pid]["n_patches"]})
    emit(progress, "end", "patients")

    write_clinical(out / "patient-clinical-data.xlsx", rows)
    split_counts = write_splits(out / "dataset-splitting", split)
    class_counts = {cls: labels.count(cls) for cls in planted.ALN_CLASSES}
    n_patches = sum(f["n_patches"] for f in facts.values())
    (out / "README.txt").write_text(readme_text(arguments, class_counts, split_counts, n_patches), encoding="utf-8")
    for pid, f in facts.items():
        f["split"] = split[pid]
    marker.update(complete=True, mpp=planted.MPP, n_patches=n_patches, class_counts=class_counts,
                  split_counts=split_counts, patients={str(pid): facts[pid] for pid in sorted(facts)})
    _write_marker(out, marker)
    seconds = time.perf_counter() - started
    log.info("demo cohort written in %.1f s: %d patients, %d official patches", seconds, patients, n_patches)
    return DemoSummary(root=out, n_patients=patients, class_counts=class_counts, split_counts=split_counts,
                       n_slides_jpeg=patients, n_slides_tiff=patients if pyramidal else 0, seconds=seconds,
                       n_patches=n_patches)
