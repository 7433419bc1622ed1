"""``run_heatmap``: a trained run's per-patch scores drawn for every slide of a feature cache.

Three passes: every selected slide is scored from its cached features (the only pass that reads them); the
fixed ranges of raw and two-slope maps are taken from all scores of the call, so colours compare across
slides; then each slide is drawn unless its ``summary.json`` already carries the same settings key (run
checkpoint digest, slide file, every drawing setting and range). One failing slide is recorded with its
reason and the others go on. Last come the cohort view and ``heatmaps.json``, the index the report reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from balnmp_cache.config import save_resolved
from balnmp_cache.errors import BalnmpError, ConfigError
from balnmp_cache.heatmap.cohort_view import write_cohort_view
from balnmp_cache.heatmap.config import HeatmapConfig
from balnmp_cache.heatmap.index import INDEX_NAME, write_index
from balnmp_cache.heatmap.outputs import DrawPlan, SlideLabel, draw_slide
from balnmp_cache.heatmap.render import Scale, resolve_range
from balnmp_cache.heatmap.scoring import RunModel, SlideScores, attention_stats, check_cache, load_model, score_slide
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.sorting import natural_key

if TYPE_CHECKING:
    from balnmp_cache.cache.schema import SlideHeader

__all__ = ["HeatmapResult", "SlideRow", "run_heatmap"]

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1


@dataclass
class SlideRow:
    """One slide's outcome: ``ok`` (drawn), ``skipped`` (already drawn with the same key) or ``failed``."""

    slide_id: str
    patient_id: str
    status: str
    n_patches: int = 0
    seconds: float = 0.0
    reason: str = ""
    flat: bool | None = None


@dataclass
class HeatmapResult:
    """What ``run_heatmap`` did (data only; the CLI renders it).

    Attributes:
        out: the output folder.
        run_dir, head: the run and its head.
        score_name: the ranking score (``attention`` or ``contribution``), ``None`` when nothing was scored.
        rows: one per selected slide.
        message: why nothing was drawn (a head that reads no features), else ``None``.
        files: output name -> path (``heatmaps.json``, ``cohort.png``, ``slides.csv``, ``config.toml``).
    """

    out: Path
    run_dir: Path
    head: str
    score_name: str | None = None
    rows: list[SlideRow] = field(default_factory=list)
    message: str | None = None
    files: dict[str, Path] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(row.status == status for row in self.rows)

    @property
    def exit_code(self) -> int:
        """1 when a slide failed, else 0."""
        return 1 if self.count("failed") else 0


def _select(config: HeatmapConfig, model: RunModel) -> tuple[Path, list[tuple[str, SlideHeader]], dict[str, str]]:
    """The cache directory, the headers of the selected slides and each slide's patient."""
    from balnmp_cache.cache import CacheDir, read_header

    cache = CacheDir.open(Path(config.cache or model.checkpoint.cache.get("directory", "")))
    files = cache.slide_files()
    missing = [sid for sid in config.slides if sid not in files]
    if missing:
        shown = ", ".join(sorted(files)[:10]) + (" ..." if len(files) > 10 else "")
        raise ConfigError(f"slide(s) {', '.join(missing)} are not in the cache {cache.directory} (slides: {shown}); "
                          "pass slide ids of that cache as SLIDES, or none for all")
    wanted = config.slides or sorted(files, key=natural_key)
    headers = [(sid, read_header(files[sid])) for sid in wanted]
    check_cache(model, [h for _, h in headers], cache.directory)
    manifest = {row.slide_id: row.patient_id for row in cache.manifest()}
    patients = {sid: str(h.attrs.get("patient_id") or manifest.get(sid) or sid) for sid, h in headers}
    return cache.directory, headers, patients


def _clinical(config: HeatmapConfig, model: RunModel, patients: list[str]) -> dict[str, np.ndarray]:
    from balnmp_cache.train.predict import clinical_vectors

    if not model.checkpoint.clinical_dim:
        return {}
    cohort = config.cohort or (Path(model.record.cohort) if model.record.cohort else None)
    vectors = clinical_vectors(model.checkpoint, cohort, patients)
    return {} if vectors is None else dict(zip(patients, vectors, strict=True))


def _score_all(config: HeatmapConfig, model: RunModel, headers: list[tuple[str, SlideHeader]],
               patients: dict[str, str], result: HeatmapResult, progress: ProgressCallback | None) -> list[SlideScores]:
    from balnmp_cache.cache import read_slide

    clinical = _clinical(config, model, sorted(set(patients.values())))
    scored: list[SlideScores] = []
    emit(progress, "start", "score", total=len(headers))
    for sid, header in headers:
        try:
            sf = read_slide(header.path)
            scores = score_slide(model, sf, clinical.get(patients[sid]), score=config.score, patient_id=patients[sid])
            scores.stats = attention_stats(scores, flat_ratio=config.flat_ratio)
            scored.append(scores)
        except ConfigError:
            raise
        except BalnmpError as err:
            result.rows.append(SlideRow(sid, patients[sid], "failed", reason=str(err)))
            log.warning("%s: %s", sid, err)
        emit(progress, "advance", "score", steps=1)
    emit(progress, "end", "score")
    return scored


def _plan(config: HeatmapConfig, model: RunModel, scored: list[SlideScores]) -> DrawPlan:
    """The scales of the two maps (ranges from every scored slide) and the drawing settings."""
    target = model.class_names[model.target_class]
    logits = [s.attention_logit for s in scored if s.attention_logit is not None]
    attention = None
    if logits:
        low, high, center = resolve_range(np.concatenate(logits), config.norm, config.center)
        cmap = config.diverging_cmap if config.norm == "two_slope" else config.cmap
        attention = Scale(config.norm, cmap, "pre-softmax attention score", low, high, center)
    values = np.concatenate([s.contribution for s in scored]) if scored else np.zeros(0)
    center = 0.0 if config.center is None else config.center
    low, high, center = resolve_range(values, config.contribution_norm, center)
    cmap = config.diverging_cmap if config.contribution_norm == "two_slope" else config.cmap
    contribution = Scale(config.contribution_norm, cmap, f"single-patch log-odds of {target}", low, high, center)
    score_name = scored[0].score_name if scored else ("attention" if attention else "contribution")
    run_line = f"run {model.run_dir.name} · head {model.checkpoint.head} · task {model.checkpoint.task_name}"
    return DrawPlan(attention, contribution, score_name, config.alpha, config.canvas_px, config.top_k,
                    config.gallery_px, config.geojson, config.flat_ratio, tuple(config.slide_dirs), run_line)


def _label(model: RunModel, patient_id: str) -> SlideLabel:
    target = model.class_names[model.target_class]
    if patient_id not in model.predictions.index:
        return SlideLabel(None, None, None, target)
    row = model.predictions.loc[patient_id]
    label = row.get("label")
    name = None if label is None or label != label else model.class_names[int(label)]
    split = row.get("split")
    probability = row.get(f"p_{model.target_class}")
    return SlideLabel(name, None if split != split else split, None if probability is None else float(probability),
                      target)


def _key(model: RunModel, plan: DrawPlan, scores: SlideScores, label: SlideLabel) -> str:
    """The settings key of one slide's outputs: what it was drawn from and how."""
    from balnmp_cache.cache.naming import canonical_json

    attrs = scores.attrs
    parts = {
        "version": _FORMAT_VERSION, "checkpoint": model.checkpoint_sha256, "target_class": model.target_class,
        "slide": {k: attrs.get(k) for k in ("cache_key", "n_patches", "created_utc", "source_path")},
        "plan": {k: v for k, v in vars(plan).items() if k not in ("attention", "contribution")},
        "scales": [None if s is None else vars(s) for s in (plan.attention, plan.contribution)],
        "label": vars(label),
    }  # fmt: skip
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]


def _drawn_files(folder: Path, key: str | None = None) -> dict[str, Path] | None:
    """Output name -> file of a slide drawn earlier (with ``key``, when given); ``None`` if it is not complete."""
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = {name: folder / file for name, file in summary.get("files", {}).items()}
    files["summary"] = folder / "summary.json"
    if (key is not None and summary.get("key") != key) or not all(path.is_file() for path in files.values()):
        return None
    return files


def _draw_all(config: HeatmapConfig, model: RunModel, plan: DrawPlan, scored: list[SlideScores],
              result: HeatmapResult, progress: ProgressCallback | None) -> dict[str, dict[str, Path]]:
    drawn: dict[str, dict[str, Path]] = {}
    emit(progress, "start", "draw", total=len(scored))
    for scores in scored:
        started = time.perf_counter()
        label = _label(model, scores.patient_id)
        folder = result.out / "slides" / scores.slide_id
        key = _key(model, plan, scores, label)
        row = SlideRow(scores.slide_id, scores.patient_id, "ok", scores.n_patches, flat=scores.stats.get("flat"))
        try:
            files = None if config.force else _drawn_files(folder, key)
            if files is None:
                files = draw_slide(scores, plan, label, folder, key=key)
            else:
                row.status = "skipped"
            drawn[scores.slide_id] = files
        except (BalnmpError, OSError) as err:
            row.status, row.reason = "failed", str(err)
            log.warning("%s: %s", scores.slide_id, err)
        row.seconds = time.perf_counter() - started
        result.rows.append(row)
        emit(progress, "advance", "draw", steps=1, info={"patches": scores.n_patches})
    emit(progress, "end", "draw")
    return drawn


def run_heatmap(config: HeatmapConfig, *, progress: ProgressCallback | None = None) -> HeatmapResult:
    """Score and draw the slides of ``config.cache`` (default the run's training cache) with ``config.run_dir``.

    Returns:
        The per-slide outcomes and the files written into ``config.out_dir``.

    Raises:
        ConfigError: no or an unfinished run, unknown slide ids, a missing cohort for a clinical run.
        CacheError: a cache of other features than the run was trained on.
    """
    model = load_model(config)
    out = config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    result = HeatmapResult(out=out, run_dir=model.run_dir, head=model.checkpoint.head)
    result.files["config.toml"] = save_resolved(config, out)
    if not model.head.uses_features:
        result.message = (f"the head {model.checkpoint.head!r} reads no patch features (it predicts from the clinical "
                          "vector alone): no patch has a score, so there is no heatmap to draw")
        log.info("%s", result.message)
        result.files[INDEX_NAME] = write_index(out, model, None, result)
        return result
    cache_dir, headers, patients = _select(config, model)
    scored = _score_all(config, model, headers, patients, result, progress)
    plan = _plan(config, model, scored)
    result.score_name = plan.score_name
    drawn = _draw_all(config, model, plan, scored, result, progress)
    ok = [s for s in scored if s.slide_id in drawn]
    labels = {s.slide_id: _label(model, s.patient_id) for s in ok}
    cohort = write_cohort_view(out, model, plan, ok, labels, split=config.cohort_split)
    if cohort is not None:
        result.files["cohort.png"] = cohort
    result.files[INDEX_NAME] = write_index(out, model, plan, result, scored=ok, drawn=drawn, labels=labels,
                                           cache_dir=cache_dir)
    log.info("heatmaps of %d slide(s) (%d drawn, %d already drawn, %d failed) in %s", len(result.rows),
             result.count("ok"), result.count("skipped"), result.count("failed"), out)
    return result
