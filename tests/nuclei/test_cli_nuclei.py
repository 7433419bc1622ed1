"""``balnmp-cache nuclei`` through the CLI: the summary of a shard, and bad input as one line."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from balnmp_cache.cli import app


def _args(root, *extra: str) -> list[str]:
    return ["nuclei", str(root / "slides"), "--out", str(root / "out"), "--slide-mpp", "0.5", "--min-tissue", "0.5",
            "--n-bins", "4", *extra]  # fmt: skip


def test_two_shards_cover_the_slides_and_the_second_builds_the_bags(cohort_dir):
    first = CliRunner().invoke(app, _args(cohort_dir, "--cohort", str(cohort_dir / "cohort.csv"), "--shard", "0/2"))
    assert first.exit_code == 0, first.output
    assert "shard 0/2" in first.output and "bags not built" in first.output
    second = CliRunner().invoke(app, _args(cohort_dir, "--cohort", str(cohort_dir / "cohort.csv"), "--shard", "1/2"))
    assert second.exit_code == 0, second.output
    assert "bags →" in second.output
    summaries = pd.read_csv(cohort_dir / "out" / "summaries.csv", dtype={"slide_id": str})
    assert sorted(summaries["slide_id"]) == [f"p{i}" for i in range(6)]


def test_a_bad_shard_is_one_line_naming_the_form(cohort_dir):
    result = CliRunner().invoke(app, _args(cohort_dir, "--shard", "2/2"))
    assert result.exit_code == 2
    assert "0 <= I < N" in result.output and "Traceback" not in result.output
    assert not (cohort_dir / "out").exists()


def test_a_segmenter_whose_package_is_absent_stops_before_any_slide(cohort_dir):
    result = CliRunner().invoke(app, _args(cohort_dir, "--segmenter", "stardist"))
    assert result.exit_code != 0
    assert "needs the stardist package" in result.output and "--segmenter classical" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not list((cohort_dir / "out").glob("tables/*/*.parquet"))
