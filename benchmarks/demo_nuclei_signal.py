"""How much the demo cohort's high-grade fields differ at the nucleus level, measured by ``balnmp-cache nuclei``.

Reads the tables written by ``make nuclei`` (``out/demo/nuclei/tables``) and the planted fields of
``demo/bcnb/demo-cohort.json``. A patch is *high-grade* when at least half of its pixels lie in a
high-grade field, *plain* when none does; per class of patch it prints the median nucleus area, major axis
and circularity (nuclei not cut by the patch edge), the median patch density and the median local
orientation order, and, per patient, the same per-WSI summaries by ALN status (``summaries.csv``).
These are the figures quoted in ``docs/demo-cohort.md``.

    .venv/bin/python benchmarks/demo_nuclei_signal.py [--nuclei out/demo/nuclei] [--cohort demo/bcnb]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from balnmp_cache.nuclei.tables import SUFFIX, read_table  # noqa: E402

PATCH = 256


def field_share(fields: list[list[float]], x: int, y: int, step: int = 4) -> float:
    """Share of a patch's pixels (sampled every ``step`` px) inside any field disc [cx, cy, r]."""
    ys, xs = np.mgrid[y + step / 2 : y + PATCH : step, x + step / 2 : x + PATCH : step]
    inside = np.zeros(ys.shape, dtype=bool)
    for cx, cy, r in fields:
        inside |= (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    return float(inside.mean())


def patch_rows(tables: Path, facts: dict) -> pd.DataFrame:
    """One row per analysed patch: its field share and nucleus measures."""
    rows = []
    for path in sorted(tables.glob(f"*{SUFFIX}")):
        table = read_table(path)
        sid = table.attrs["slide_id"]
        fields = facts["patients"][sid]["high_grade_fields"]
        whole = table.nuclei[~table.nuclei["border"]]
        by_patch = whole.groupby("patch")
        for i, patch in table.patches.iterrows():
            share = field_share(fields, int(patch["x"]), int(patch["y"]))
            mine = by_patch.get_group(i) if i in by_patch.groups else whole.iloc[:0]
            rows.append({
                "slide_id": sid, "share": share, "density": patch["density_per_mm2"],
                "order": patch["orientation_order"], "area": mine["area_um2"].median(),
                "major": mine["major_axis_um"].median(), "circularity": mine["circularity"].median(),
            })  # fmt: skip
    return pd.DataFrame(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nuclei", type=Path, default=ROOT / "out" / "demo" / "nuclei")
    parser.add_argument("--cohort", type=Path, default=ROOT / "demo" / "bcnb")
    args = parser.parse_args()
    tables = next((args.nuclei / "tables").glob("*-nuclei-*"), None)
    if tables is None:
        print(f"SKIP: no tables under {args.nuclei}; run make nuclei first")
        return 0
    facts = json.loads((args.cohort / "demo-cohort.json").read_text(encoding="utf-8"))
    patches = patch_rows(tables, facts)
    groups = {
        "high-grade (>= 50% in a field)": patches[patches.share >= 0.5],
        "plain (no field)": patches[patches.share == 0],
    }
    print("| patches | n | nucleus area µm² | major axis µm | circularity | density per mm² | orientation order |")
    print("|---|---|---|---|---|---|---|")
    for name, g in groups.items():
        print(f"| {name} | {len(g)} | {g.area.median():.1f} | {g.major.median():.2f} | {g.circularity.median():.3f} "
              f"| {g.density.median():.0f} | {g.order.median():.3f} |")  # fmt: skip
    high, plain = groups.values()
    print(f"\nhigh-grade / plain: area x{high.area.median() / plain.area.median():.2f}, "
          f"density x{high.density.median() / plain.density.median():.2f}")
    summary = pd.read_csv(args.nuclei / "summaries.csv", dtype={"patient_id": str, "slide_id": str})
    status = {pid: p["aln_status"] for pid, p in facts["patients"].items()}
    summary["aln_status"] = summary["patient_id"].map(status)
    print("\nper-WSI medians by ALN status:")
    print(summary.groupby("aln_status")[["area", "major_axis", "circularity", "density", "orientation"]].median()
          .round(3).to_string())  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
