"""Synthetic studies for tests and benchmarks: a real feature cache and a cohort CSV with a planted signal.

Used by ``tests/train`` and ``benchmarks/bench_train.py``; not part of the package.

Patients get an ALN status; N(+) patients have a share of "tumour-like" patches whose first
``signal_dims`` features are shifted by ``signal``, so an attention-MIL head can learn the task
while a random one cannot. Patch counts can follow BCNB (lognormal, median 36, mean 72, at least
10, the largest 2,915). Everything is written through the real feature store
(:func:`balnmp_cache.cache.write_slide`, ``manifest.csv``, ``cache.json``).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["SyntheticStudy", "bcnb_patch_counts", "make_study"]

_STATUSES = ("N0", "N+(1-2)", "N+(>2)")
_STATUS_P = (0.62, 0.20, 0.18)  # BCNB: 655 / 210 / 193 of 1,058


@dataclass(frozen=True)
class SyntheticStudy:
    """Where a synthetic study was written.

    Attributes:
        cache_dir: the cache directory (``<root>/cache/synthetic-avg-<key>``).
        cohort_csv: the cohort CSV (patient_id, ALN status, clinical columns, split).
        patient_ids: the patients, in order.
        n_patches: (P,) patches per patient.
        status: ALN status per patient.
        feature_bytes: bytes of all stored features.
    """

    cache_dir: Path
    cohort_csv: Path
    patient_ids: list[str]
    n_patches: np.ndarray
    status: list[str]
    feature_bytes: int


def bcnb_patch_counts(n_patients: int, rng: np.random.Generator) -> np.ndarray:
    """Patches per patient drawn to look like BCNB: median 36, mean 72.4, 10 to 2,915 (1,058 patients: ~76,600).

    A lognormal draw (median 36, mean 72 before clipping) whose upper half is then stretched about the
    median so the total is 72.4 per patient, as in BCNB's 76,578 patches of 1,058 patients.
    """
    counts = np.exp(rng.normal(np.log(36.0), np.sqrt(2.0 * np.log(72.0 / 36.0)), n_patients))
    counts = np.clip(counts, 10, 2915)
    if n_patients >= 100:
        counts[int(np.argmax(counts))] = 2915
        median = float(np.median(counts))
        upper = counts > median
        for _ in range(20):  # stretch the upper half until the mean is BCNB's (clipping makes it iterative)
            deficit = 72.4 * n_patients - counts.sum()
            spread = float((counts[upper] - median)[counts[upper] < 2915].sum())
            if abs(deficit) < 1 or spread <= 0:
                break
            stretched = median + (counts[upper] - median) * (1.0 + deficit / spread)
            counts[upper] = np.clip(stretched, 10, 2915)
    return np.round(counts).astype(np.int64)


def make_study(
    root: Path,
    *,
    n_patients: int = 60,
    dim: int = 16,
    n_patches: np.ndarray | list[int] | None = None,
    signal: float = 1.5,
    signal_dims: int = 4,
    signal_share: float = 0.4,
    seed: int = 0,
    dtype: Literal["float16", "float32"] = "float16",
    format: Literal["hdf5", "zarr"] = "hdf5",
    splits: tuple[float, float, float] = (0.6, 0.2, 0.2),
    slides_per_patient: int = 1,
) -> SyntheticStudy:
    """Write a synthetic cache and cohort under ``root``.

    Args:
        root: output folder (``cache/`` and ``cohort.csv`` are created in it).
        n_patients: P.
        dim: D, feature dimension.
        n_patches: patches per patient; default 5..60 uniformly.
        signal: shift of the planted features in positive patients' tumour-like patches.
        signal_dims: how many leading feature dimensions carry the shift.
        signal_share: share of a positive patient's patches that carry it.
        seed: seed of everything drawn.
        dtype, format: how the cache stores features.
        splits: train / val / test shares (stratified by status).
        slides_per_patient: slides each patient's patches are spread over (``<pid>`` or ``<pid>_<k>``).
    """
    from balnmp_cache.cache import (
        ManifestRow,
        SlideFeatures,
        cache_dir_name,
        cache_key,
        update_manifest,
        write_cache_json,
        write_slide,
    )

    rng = np.random.default_rng(seed)
    root = Path(root)
    counts = np.asarray(n_patches if n_patches is not None else rng.integers(5, 61, n_patients), dtype=np.int64)
    n_patients = len(counts)
    status = [str(s) for s in rng.choice(_STATUSES, size=n_patients, p=_STATUS_P)]
    status[:3] = list(_STATUSES)  # every class present
    patient_ids = [str(i + 1) for i in range(n_patients)]
    params = {"encoder": "synthetic", "dim": dim, "seed": seed, "signal": signal, "dtype": dtype}
    cache_dir = root / "cache" / cache_dir_name("synthetic", "avg", cache_key(params))
    key = write_cache_json(cache_dir, params)
    attrs = {"encoder": "synthetic", "encoder_identifier": f"synthetic-{dim}", "weights": "random",
             "weights_sha256": "", "random_weights": True, "mode": "avg", "input_px": 224, "patch_px": 256,
             "cache_key": key}
    manifest = []
    feature_bytes = 0
    for pid, n, st in zip(patient_ids, counts, status, strict=True):
        features = rng.standard_normal((int(n), dim), dtype=np.float32)
        if st != "N0":
            hit = rng.random(int(n)) < signal_share
            features[hit, :signal_dims] += signal
        grid = np.arange(int(n))
        coords = np.stack([(grid % 50) * 256, (grid // 50) * 256], axis=1).astype(np.int64)
        keys = np.array([f"patches/{pid}/{pid}_0_{x}_{y}.jpg" for x, y in coords], dtype=object)
        parts = np.array_split(np.arange(int(n)), min(slides_per_patient, int(n)))
        for k, part in enumerate(parts):
            sid = pid if len(parts) == 1 else f"{pid}_{k}"
            sf = SlideFeatures(sid, features[part], coords[part], np.zeros(len(part), np.int32), keys[part],
                               {**attrs, "patient_id": pid, "source_path": f"synthetic/{sid}"})
            write_slide(cache_dir, sf, format=format, dtype=dtype)
            manifest.append(ManifestRow(slide_id=sid, patient_id=pid, source=f"synthetic/{sid}", status="ok",
                                        n_patches=len(part)))
        feature_bytes += int(n) * dim * np.dtype(dtype).itemsize
    update_manifest(cache_dir, manifest)
    cohort_csv = root / "cohort.csv"
    _write_cohort(cohort_csv, patient_ids, status, splits, rng)
    return SyntheticStudy(cache_dir, cohort_csv, patient_ids, counts, status, feature_bytes)


def _write_cohort(path: Path, patient_ids: list[str], status: list[str], splits: tuple[float, float, float],
                  rng: np.random.Generator) -> None:
    split = np.empty(len(patient_ids), dtype=object)
    for st in _STATUSES:
        idx = np.flatnonzero(np.asarray(status) == st)
        idx = idx[rng.permutation(len(idx))]
        n_train = round(splits[0] * len(idx))
        n_val = round(splits[1] * len(idx))
        split[idx[:n_train]] = "train"
        split[idx[n_train : n_train + n_val]] = "val"
        split[idx[n_train + n_val :]] = "test"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient_id", "ALN status", "age", "tumour_size_cm", "er", "pr", "her2", "split"])
        for pid, st, sp in zip(patient_ids, status, split, strict=True):
            positive = st != "N0"
            writer.writerow([
                pid, st, int(rng.integers(30, 80)), round(float(rng.uniform(0.5, 5.0) + 0.5 * positive), 1),
                "Positive" if rng.random() < 0.8 else "Negative", "Positive" if rng.random() < 0.75 else "Negative",
                "Negative" if rng.random() < 0.7 else "Positive", sp,
            ])
