"""The report's heatmap section: one self-contained function, :func:`heatmap_section`.

It reads the ``heatmaps.json`` of each heatmap output under the given folder and returns one report
:class:`~balnmp_cache.report.render.Section`: per run, what the scores are, how many slides have near-uniform
attention, the cohort view and a few example maps (embedded in the HTML), and a table linking every slide's
maps, galleries, scores and GeoJSON (paths relative to the report's folder).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from balnmp_cache.errors import ConfigError
from balnmp_cache.heatmap.index import INDEX_NAME, read_index
from balnmp_cache.report.render import FigureBlock, Link, Section, TableBlock

__all__ = ["find_heatmaps", "heatmap_section"]

_TITLE = "Heatmaps: where the model looks"
_EXAMPLES = 1  # example maps per class shown in the report
_EMBED_PX = 420  # width of an example map embedded in the HTML
_COHORT_PX = 840  # width of the cohort view embedded in the HTML (shown at 560: sharp enough on dense screens)
_COLOURS = 128  # embedded previews are quantised to this many colours (a third of the bytes); the files are full
_LINKS = (("attention", "attention"), ("contribution", "contribution"), ("top", "top"), ("bottom", "bottom"),
          ("scores", "scores"), ("geojson", "GeoJSON"))


def find_heatmaps(path: Path) -> list[Path]:
    """``path`` if it holds a ``heatmaps.json``, else its sub-folders that do (sorted)."""
    path = Path(path)
    if (path / INDEX_NAME).is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(child for child in path.iterdir() if (child / INDEX_NAME).is_file())


def _embedded(path: Path, title: str, width_px: int = _EMBED_PX) -> FigureBlock:
    """A figure block of ``path`` whose embedded PNG is a preview at most ``width_px`` wide, in 128 colours."""
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    if image.width > width_px:
        image = image.resize((width_px, max(1, round(image.height * width_px / image.width))), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.quantize(_COLOURS, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    return FigureBlock(title, [path], buffer.getvalue())


def _href(folder: Path, relative: str, report_dir: Path) -> str:
    return Path(os.path.relpath(folder / relative, report_dir)).as_posix()


def _summary(index: Mapping[str, Any]) -> str:
    drawn = [s for s in index["slides"] if s["status"] != "failed"]
    failed = len(index["slides"]) - len(drawn)
    flat = sum(bool(s.get("flat")) for s in drawn)
    definitions = index["definitions"]
    text = (f"Run {index['run']} (head {index['head']}, task {index['task_name']}): {len(drawn)} slide(s) drawn"
            + (f", {failed} failed" if failed else "") + f"; patches are ranked by their {index['score']} score. "
            f"Attention score: {definitions['attention_logit']}. Contribution: {definitions['contribution']}.")
    if index["score"] == "attention":
        text += (f" Attention is near-uniform on {flat} of {len(drawn)} slide(s) ({definitions['flat']}): "
                 "there, the top and bottom patches are no real choice of the model.")
    return text


def _examples(folder: Path, index: Mapping[str, Any]) -> list[FigureBlock]:
    """Maps of the test slides of each class that the run predicts most confidently as that class."""
    classes = index["classes"]
    target = classes[index["target_class"]]
    blocks = []
    name = "attention" if index["score"] == "attention" else "contribution"
    for class_name in classes:
        slides = [s for s in index["slides"] if s.get("class") == class_name and s.get("split") == "test"
                  and name in s.get("files", {}) and s.get("probability") is not None]
        toward = 1.0 if class_name == target else -1.0
        slides.sort(key=lambda s: -toward * s["probability"])
        for s in slides[:_EXAMPLES]:
            title = (f"{index['run']}: slide {s['slide_id']} ({class_name}, test, "
                     f"p({target}) = {s['probability']:.2f}), {name} map")
            blocks.append(_embedded(folder / s["files"][name], title))
    return blocks


def _table(folder: Path, index: Mapping[str, Any], report_dir: Path) -> TableBlock:
    rows = []
    for s in index["slides"]:
        files = s.get("files", {})
        links = tuple(Link(text, _href(folder, files[key], report_dir)) for key, text in _LINKS if key in files)
        ratio = s.get("weight_ratio_p95_p5")
        rows.append([
            s["slide_id"], s["patient_id"], s.get("class") or "–", s.get("split") or "–",
            "–" if s.get("probability") is None else f"{s['probability']:.2f}", str(s.get("n_patches", "–")),
            "–" if ratio is None else f"{ratio:.2f}" + (" (flat)" if s.get("flat") else ""),
            links or s.get("reason", ""),
        ])  # fmt: skip
    target = index["classes"][index["target_class"]]
    columns = ["Slide", "Patient", "Class", "Split", f"p({target})", "Patches", "p95/p5 weight", "Files"]
    return TableBlock(f"{index['run']}: every slide", columns, rows,
                      note="p95/p5 weight: how many times more weight a 95th-percentile patch gets than a "
                      "5th-percentile one in the same bag (1 = uniform attention).")


def heatmap_section(path: Path, *, report_dir: Path) -> Section:
    """The report section for the heatmap outputs under ``path`` (one folder, or a folder of them).

    Args:
        path: a ``balnmp-cache heatmap`` output folder, or a folder whose sub-folders are.
        report_dir: the report's folder (links are relative to it).
    """
    section = Section(_TITLE)
    folders = find_heatmaps(path)
    if not folders:
        section.blocks.append(f"No heatmaps in {path}: run `make heatmap`, or `balnmp-cache heatmap RUN_DIR --out "
                              f"{path}/<run>` for each run.")
        return section
    for folder in folders:
        try:
            index = read_index(folder)
        except ConfigError as err:
            section.blocks.append(str(err))
            continue
        if index.get("message"):
            section.blocks.append(f"Run {index['run']}: {index['message']}.")
            continue
        section.blocks.append(_summary(index))
        if index.get("cohort_view"):
            section.blocks.append(_embedded(folder / index["cohort_view"], f"{index['run']}: cohort view", _COHORT_PX))
        section.blocks.extend(_examples(folder, index))
        section.blocks.append(_table(folder, index, report_dir))
    return section
