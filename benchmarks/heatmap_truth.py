"""Do the heatmaps point at the planted signal? Scores of high-grade vs other patches on the demo cohort.

The demo generator knows which pixels it painted high-grade (``balnmp_cache.demo.truth``). For every heatmap
output folder given (``balnmp-cache heatmap RUN_DIR --out DIR``), this compares, over the slides of N(+)
patients, the scores of high-grade patches (at least 30% of the patch high-grade, the generator's own rule)
with those of the other patches: the mean attention score, the mean single-patch log-odds, the mean
within-slide percentile (50 = no preference), and the share of slides whose high-grade patches score higher
on average (by the ranking score and by the contribution). Prints a Markdown table (the one in benchmarks/RESULTS.md).

    .venv/bin/python benchmarks/heatmap_truth.py out/demo/heatmaps/image out/demo/heatmaps/image_clinical \\
        --cohort demo/bcnb
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from balnmp_cache.demo.truth import high_grade_fractions
from balnmp_cache.heatmap import read_index

HIGH_GRADE = 0.3  # the generator's rule for a high-grade patch


def slide_rows(folder: Path, cohort: Path, split: str) -> pd.DataFrame:
    """One row per patch of the N(+) slides of ``split``: its scores and high-grade fraction."""
    index = read_index(folder)
    negative = index["classes"][0]
    frames = []
    for slide in index["slides"]:
        if slide["status"] == "failed" or slide.get("class") in (None, negative):
            continue
        if split != "all" and slide.get("split") != split:
            continue
        scores = pd.read_csv(folder / slide["files"]["scores"])
        xy = scores[["x", "y"]].to_numpy()
        fraction = high_grade_fractions(cohort, slide["patient_id"], xy, int(slide["patch_level0_px"]))
        frames.append(scores.assign(slide_id=slide["slide_id"], high_grade=fraction >= HIGH_GRADE))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarise(folder: Path, cohort: Path, split: str) -> dict[str, object]:
    """The figures of one run on the N(+) slides of ``split``."""
    run = json.loads((Path(read_index(folder)["run_dir"]) / "run.json").read_text())
    rows = slide_rows(folder, cohort, split)
    high, other = rows[rows.high_grade], rows[~rows.high_grade]
    both = [g for _, g in rows.groupby("slide_id") if g.high_grade.any() and (~g.high_grade).any()]
    higher = {column: sum(g.loc[g.high_grade, column].mean() > g.loc[~g.high_grade, column].mean() for g in both)
              for column in ("score", "contribution")}
    return {
        "run": folder.name, "head": run["head"], "test AUC": run["metrics"]["test"]["auc"],
        "slides": rows.slide_id.nunique(), "patches high-grade / other": f"{len(high)} / {len(other)}",
        "attention score": f"{high.attention_logit.mean():.4f} vs {other.attention_logit.mean():.4f}",
        "contribution": f"{high.contribution.mean():.3f} vs {other.contribution.mean():.3f}",
        "percentile": f"{high.percentile.mean():.1f} vs {other.percentile.mean():.1f}",
        "slides high > other (ranking score)": f"{higher['score']} of {len(both)}",
        "slides high > other (contribution)": f"{higher['contribution']} of {len(both)}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="heatmap output folders, one per run")
    parser.add_argument("--cohort", type=Path, default=Path("demo/bcnb"), help="the demo cohort folder")
    parser.add_argument("--split", default="all", choices=["all", "train", "val", "test"])
    args = parser.parse_args()
    rows = [summarise(folder, args.cohort, args.split) for folder in args.folders]
    print(f"N(+) slides of split '{args.split}'; high-grade patch = at least {HIGH_GRADE:.0%} high-grade pixels; "
          "values are means, high-grade vs other patches; percentile = within-slide percentile of the ranking score")
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
