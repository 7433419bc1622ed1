"""Detection accuracy of a segmenter against annotated nucleus centres (CRCHistoPhenotypes and alike).

A predicted nucleus (the centroid of a segmented object) is a true positive when it is paired with an
annotated centre at most ``radius_px`` away. Pairs are one-to-one and chosen by the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``) on the distances, with every pair beyond the radius given a
prohibitive cost: the assignment first maximises the number of pairs within the radius, then minimises
their total distance. Precision, recall and F1 are pooled over images (sums of TP, FP, FN).

:func:`load_crc_image` reads one image of CRCHistoPhenotypes (Sirinukunwattana et al., IEEE TMI 2016):
``images/img<N>.bmp`` (500x500 H&E) and ``annotations/img<N>_detection.mat`` (key ``detection``, (n, 2)
x, y). The centres are MATLAB's 1-based pixel coordinates; one is subtracted to put them in the same
0-based frame as the centroids (before that, matched predictions sit at a mean offset of about
(-1.1, -0.7) px from them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from balnmp_cache.errors import ConfigError

__all__ = ["CRC_MPP", "DetectionScore", "centroids", "load_crc_image", "match_count", "pooled", "score_detections"]

CRC_MPP = 0.55
"""µm per pixel of CRCHistoPhenotypes: 20x objective (Sirinukunwattana et al. 2016; its Readme.txt says nothing)."""

_FAR = 1e9


@dataclass(frozen=True)
class DetectionScore:
    """Pooled detection counts and the derived precision, recall and F1."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: DetectionScore) -> DetectionScore:
        return DetectionScore(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def match_count(predicted_xy: np.ndarray, true_xy: np.ndarray, *, radius_px: float) -> int:
    """Pairs within ``radius_px`` of a one-to-one (Hungarian) matching of (P, 2) and (T, 2) points."""
    from scipy.optimize import linear_sum_assignment

    if len(predicted_xy) == 0 or len(true_xy) == 0:
        return 0
    distance = np.hypot(
        predicted_xy[:, None, 0] - true_xy[None, :, 0], predicted_xy[:, None, 1] - true_xy[None, :, 1]
    )  # (P, T)
    rows, cols = linear_sum_assignment(np.where(distance <= radius_px, distance, _FAR))
    return int((distance[rows, cols] <= radius_px).sum())


def score_detections(predicted_xy: np.ndarray, true_xy: np.ndarray, *, radius_px: float = 6.0) -> DetectionScore:
    """TP, FP and FN of one image."""
    tp = match_count(predicted_xy, true_xy, radius_px=radius_px)
    return DetectionScore(tp, len(predicted_xy) - tp, len(true_xy) - tp)


def centroids(labels: np.ndarray) -> np.ndarray:
    """(n, 2) x, y centroid of labels 1..n of an (H, W) label image."""
    n = int(labels.max(initial=0))
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    y, x = np.divmod(np.arange(flat.size), labels.shape[1])
    cx = np.bincount(flat, weights=x, minlength=n + 1)[1:] / np.maximum(area, 1)
    cy = np.bincount(flat, weights=y, minlength=n + 1)[1:] / np.maximum(area, 1)
    return np.column_stack([cx, cy])


def load_crc_image(root: Path, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Image ``index`` (1-100) of CRCHistoPhenotypes under ``root``: (500, 500, 3) uint8 and (n, 2) 0-based x, y.

    Raises:
        ConfigError: the image or its annotation is missing.
    """
    from PIL import Image
    from scipy.io import loadmat

    root = Path(root)
    image_path, mat_path = root / "images" / f"img{index}.bmp", root / "annotations" / f"img{index}_detection.mat"
    if not image_path.is_file() or not mat_path.is_file():
        raise ConfigError(
            f"{image_path} or {mat_path} is missing; pass the CRCHistoPhenotypes folder (images/, annotations/)"
        )
    with Image.open(image_path) as image:
        rgb = np.asarray(image.convert("RGB"))
    centres = np.asarray(loadmat(mat_path)["detection"], dtype=np.float64).reshape(-1, 2) - 1.0
    return rgb, centres


def pooled(scores: Iterable[DetectionScore]) -> DetectionScore:
    """The sum of per-image scores."""
    total = DetectionScore(0, 0, 0)
    for score in scores:
        total = total + score
    return total
