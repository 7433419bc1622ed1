"""Per-patch scores of a trained run on one slide's cached features, and how flat its attention is.

Every cached patch of a slide is scored in one pass through the run's head (:meth:`MILHead.patch_scores`):

- ``attention_logit``: the pre-softmax attention score. It depends on the patch alone (never on the other
  patches of a bag), so it is comparable across bags and slides; the per-bag softmax is not.
- ``attention``: the weight of each patch when the whole slide is one bag (softmax of the scores over the
  slide; heads without scores: the weights their own pooling gives to that bag).
- ``contribution``: the log-odds of the target class given by the patch alone, as a bag of one patch (with
  the patient's clinical vector when the run fused it): ``logit_c - logsumexp(other logits)``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from balnmp_cache.errors import CacheError, ConfigError

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from balnmp_cache.cache.schema import SlideFeatures, SlideHeader
    from balnmp_cache.heatmap.config import HeatmapConfig
    from balnmp_cache.mil import MILHead
    from balnmp_cache.runs import Checkpoint, RunRecord

__all__ = [
    "RunModel", "SlideScores", "attention_stats", "average_ranks", "check_cache", "load_model", "percentiles",
    "score_slide",
]

log = logging.getLogger(__name__)

_CHUNK_BYTES = 64 << 20  # float32 bytes of features scored at once
_BAG_BYTES = 1 << 30  # largest whole-slide bag a head without attention scores is run on


@dataclass
class RunModel:
    """A finished run, ready to score patches.

    Attributes:
        run_dir: the run directory.
        record, checkpoint: its ``run.json`` and ``checkpoint.pt``.
        head: the head in eval mode on ``device``.
        device: where it runs.
        target_class: the class whose log-odds a contribution is.
        predictions: ``predictions.csv`` indexed by patient id (split, label, p_0 ...).
        checkpoint_sha256: digest of ``checkpoint.pt`` (part of every slide's settings key).
    """

    run_dir: Path
    record: RunRecord
    checkpoint: Checkpoint
    head: MILHead
    device: torch.device
    target_class: int
    predictions: pd.DataFrame
    checkpoint_sha256: str

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.checkpoint.classes)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(config: HeatmapConfig) -> RunModel:
    """The run of ``config.run_dir`` with its head, predictions and target class.

    Raises:
        ConfigError: no run directory, an unfinished run, or a target class the run does not have.
    """
    from balnmp_cache import runs
    from balnmp_cache.train.engine import resolve_device
    from balnmp_cache.train.predict import load_run

    if config.run_dir is None:
        raise ConfigError("no run directory: pass RUN_DIR (the --out of a train run) or set run_dir in the config")
    run_dir = Path(config.run_dir)
    if not runs.is_finished(run_dir):
        raise ConfigError(
            f"{run_dir} is not a finished run (run.json with complete: true and predictions.csv); "
            "let train finish, or pass the --out of a finished train run as RUN_DIR"
        )
    record = runs.read_run(run_dir)
    ckpt, head = load_run(run_dir)
    n_classes = len(ckpt.classes)
    target = n_classes - 1 if config.target_class is None else config.target_class
    if target >= n_classes:
        raise ConfigError(f"target_class {target} is not a class of this run (0..{n_classes - 1}: "
                          f"{', '.join(ckpt.classes)}); change --target-class")
    device = resolve_device(config.device)
    predictions = runs.read_predictions(run_dir).drop_duplicates("patient_id").set_index("patient_id")
    return RunModel(run_dir, record, ckpt, head.to(device).eval(), device, target, predictions,
                    _sha256(runs.run_files(run_dir).checkpoint))


def check_cache(model: RunModel, headers: list[SlideHeader], cache_dir: Path) -> None:
    """Refuse slides whose features are not the run's: another dimension or another cache key.

    Raises:
        CacheError: naming the cache, its encoder and key, the run's, and the fix.
    """
    trained = model.checkpoint.cache
    for header in headers:
        key = str(header.attrs.get("cache_key") or "")
        other_dim = header.feature_dim != model.checkpoint.in_dim
        other_key = bool(key and trained.get("cache_key") and key != trained["cache_key"])
        if other_dim or other_key:
            raise CacheError(
                f"{cache_dir} holds {header.feature_dim}-d features of encoder {header.attrs.get('encoder')} "
                f"(cache key {key or 'unknown'}) but the run was trained on {model.checkpoint.in_dim}-d features of "
                f"encoder {trained.get('encoder')} (cache key {trained.get('cache_key')}); pass the run's training "
                f"cache as --cache ({trained.get('directory')}) or extract the slides with the run's settings"
            )


@dataclass
class SlideScores:
    """Every cached patch of one slide with its scores.

    Attributes:
        slide_id, patient_id: the slide and its patient.
        attrs: the slide file's attributes (``patch_level0_px``, ``slide_width``, ``source_path``, ...).
        coords: (N, 2) int64 level-0 top-left x, y, as cached.
        region_id: (N,) int32; patch_key: (N,) str.
        attention_logit: (N,) float32 pre-softmax attention, or ``None`` (a head without one).
        attention: (N,) float32 weights of the slide as one bag (sum 1).
        contribution: (N,) float32 single-patch log-odds of the target class.
        score_name: ``attention`` or ``contribution``: which of the two ranks the patches.
        stats: uniformity and spread figures (:func:`attention_stats`).
    """

    slide_id: str
    patient_id: str
    attrs: dict[str, Any]
    coords: np.ndarray
    region_id: np.ndarray
    patch_key: np.ndarray
    attention_logit: np.ndarray | None
    attention: np.ndarray
    contribution: np.ndarray
    score_name: str
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def score(self) -> np.ndarray:
        """(N,) the ranking score: the attention logit, or the contribution."""
        if self.score_name == "attention" and self.attention_logit is not None:
            return self.attention_logit
        return self.contribution

    @property
    def n_patches(self) -> int:
        return len(self.coords)

    @property
    def patch_level0_px(self) -> int:
        """The side of a patch in level-0 pixels: the file's ``patch_level0_px``, else ``patch_px`` times
        ``downsample``, else (files of other tools) the grid step of the coordinates, else 256."""
        side = self.attrs.get("patch_level0_px")
        if isinstance(side, (int, float)) and side > 0:
            return round(side)
        patch_px, downsample = self.attrs.get("patch_px"), self.attrs.get("downsample", 1.0)
        if isinstance(patch_px, (int, float)) and patch_px > 0 and isinstance(downsample, (int, float)):
            return round(patch_px * downsample)
        steps = [np.diff(np.unique(self.coords[:, axis])) for axis in (0, 1)]
        step = int(np.gcd.reduce(np.concatenate(steps).astype(np.int64))) if sum(map(len, steps)) else 0
        return step if step > 0 else 256


def _log_odds(logits: np.ndarray, target: int) -> np.ndarray:
    """(N, C) logits -> (N,) ``logit_target - logsumexp(other logits)`` (binary: logit_1 - logit_0)."""
    others = np.delete(logits, target, axis=1)
    peak = others.max(axis=1, keepdims=True)
    rest = peak[:, 0] + np.log(np.exp(others - peak).sum(axis=1))
    return (logits[:, target] - rest).astype(np.float32)


def _bag_attention(model: RunModel, features: np.ndarray, clinical: torch.Tensor | None) -> np.ndarray:
    """(N,) the weights a head without attention scores gives the slide as one bag (uniform when too large)."""
    import torch

    n, dim = features.shape
    if n * dim * 4 > _BAG_BYTES:
        log.warning("slide of %d patches is too large to run as one bag; its whole-slide weights are set uniform", n)
        return np.full(n, 1.0 / n, dtype=np.float32)
    x = torch.from_numpy(np.asarray(features, dtype=np.float32)).to(model.device)[None]  # (1, N, D)
    _, weights = model.head(x, None, None if clinical is None else clinical[None])
    return weights[0].float().cpu().numpy()


def score_slide(
    model: RunModel, sf: SlideFeatures, clinical: np.ndarray | None, *, score: str, patient_id: str
) -> SlideScores:
    """Score every patch of one slide in chunks of at most 64 MiB of float32 features.

    Args:
        model: the run.
        sf: the slide's cached features.
        clinical: (K,) the patient's clinical vector, or ``None`` for an image-only run.
        score: ``auto``, ``attention`` or ``contribution`` (``auto``: attention where the head has it).
        patient_id: the slide's patient.
    """
    import torch

    features = sf.features
    n, dim = features.shape
    step = max(1, _CHUNK_BYTES // (4 * dim))
    clin = None if clinical is None else torch.from_numpy(np.asarray(clinical, dtype=np.float32)).to(model.device)
    logits, scores = [], []
    with torch.inference_mode():
        for start in range(0, n, step):
            x = torch.from_numpy(np.asarray(features[start : start + step], dtype=np.float32)).to(model.device)
            chunk_logits, chunk_scores = model.head.patch_scores(x, clin)  # (n, C), (n,) | None
            logits.append(chunk_logits.float().cpu().numpy())
            if chunk_scores is not None:
                scores.append(chunk_scores.float().cpu().numpy())
        attention_logit = np.concatenate(scores).astype(np.float32) if scores else None
        if score == "attention" and attention_logit is None:
            head = model.checkpoint.head
            raise ConfigError(f"the head {head!r} has no attention score; use --score contribution or auto")
        if attention_logit is not None:
            shifted = np.exp(attention_logit.astype(np.float64) - attention_logit.max())
            attention = (shifted / shifted.sum()).astype(np.float32)
        else:
            attention = _bag_attention(model, features, clin)
    contribution = _log_odds(np.concatenate(logits), model.target_class)
    name = "contribution" if score == "contribution" or attention_logit is None else "attention"
    return SlideScores(sf.slide_id, patient_id, dict(sf.attrs), np.asarray(sf.coords), np.asarray(sf.region_id),
                       np.asarray(sf.patch_key, dtype=object), attention_logit, attention, contribution, name)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """(N,) float ranks 1..N of ``values`` (1 = lowest), tied values sharing the mean of their ranks."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # first position of each run of equal values
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # mean of positions start+1 .. end
    return ranks


def percentiles(values: np.ndarray) -> np.ndarray:
    """(N,) ``100 * rank / N`` with average ranks for ties: 100 for the highest value, 100 / N for the lowest."""
    return 100.0 * average_ranks(values) / max(len(values), 1)


def attention_stats(scores: SlideScores, *, flat_ratio: float) -> dict[str, Any]:
    """How uniform the attention of a slide is, and how spread its scores are.

    ``normalised_entropy`` is the entropy of the whole-slide weights divided by ``log N`` (1 = uniform);
    ``weight_ratio_p95_p5`` = exp(p95 - p5) of the attention logits is how many times more weight a
    95th-percentile patch gets than a 5th-percentile one *in the same bag*, whatever the bag; the slide is
    ``flat`` when that ratio is below ``flat_ratio`` (its "top patches" are then no choice of the model).
    """
    weights = scores.attention.astype(np.float64)
    n = scores.n_patches
    entropy = float(-(weights[weights > 0] * np.log(weights[weights > 0])).sum())
    stats: dict[str, Any] = {
        "n_patches": n,
        "normalised_entropy": entropy / np.log(n) if n > 1 else None,
        "effective_patches": float(np.exp(entropy)),
        "max_weight_times_n": float(weights.max() * n),
    }
    contribution = scores.contribution.astype(np.float64)
    stats |= {f"contribution_{k}": float(v) for k, v in _spread(contribution).items()}
    if scores.attention_logit is None:
        return stats | {"weight_ratio_p95_p5": None, "flat": None}
    spread = _spread(scores.attention_logit.astype(np.float64))
    ratio = float(np.exp(spread["p95"] - spread["p5"]))
    stats |= {f"attention_logit_{k}": float(v) for k, v in spread.items()}
    return stats | {"weight_ratio_p95_p5": ratio, "flat": bool(ratio < flat_ratio)}


def _spread(values: np.ndarray) -> dict[str, float]:
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    return {"mean": values.mean(), "std": values.std(), "min": values.min(), "p5": p5, "median": median,
            "p95": p95, "max": values.max()}
