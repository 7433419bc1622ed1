"""Issue 8, item 5: ``predict`` says which slides and patients failed, and exits 1 when any did.

A run trained on four tiny real slides (EfficientNet-Lite0 features) predicts a folder of three: one
sound slide, one that is not an image and one without tissue. Then another folder whose slide has the
same id as the first call's sound slide: refused as a collision, and never scored from the first file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from balnmp_cache.extract import run_extract

from .conftest import extract_config, run_cli, write_tiny_slide
from .runs_support import one_error

COHORT = "patient_id,ALN status,split\na,N0,train\nb,N+(1-2),train\nc,N0,val\nd,N+(>2),val\n"


@pytest.fixture(scope="module")
def slide_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run trained on the features of four tiny slides a-d."""
    root = tmp_path_factory.mktemp("slide-run")
    for i, name in enumerate("abcd"):
        write_tiny_slide(root / "slides" / f"{name}.jpg", offset=64 * i, seed=10 + i)
    cache_dir = run_extract(extract_config([root / "slides"], root / "cache")).cache_dir
    (root / "cohort.csv").write_text(COHORT)
    result = run_cli("train", "--cache", cache_dir, "--cohort", root / "cohort.csv", "--out", root / "run",
                     "--epochs", "2", "--patience", "2", "--threads", "1", "--device", "cpu", "--no-clinical")
    assert result.exit_code == 0, result.stderr
    return root / "run"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_failed_slides_are_listed_with_their_reasons_and_the_exit_code_is_1(slide_run: Path, tmp_path) -> None:
    new = tmp_path / "new"
    write_tiny_slide(new / "e.jpg", offset=32, seed=20)
    (new / "broken.jpg").write_bytes(b"not a JPEG at all")
    Image.fromarray(np.full((256, 512, 3), 250, np.uint8)).save(new / "white.jpg")
    out = tmp_path / "predict"
    result = run_cli("predict", slide_run, new, "--out", out)
    assert result.exit_code == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert "1 patient(s) scored, 2 failure(s) (failures.csv)" in result.stdout
    assert [r["patient_id"] for r in _rows(out / "predictions.csv")] == ["e"]
    failures = {r["slide_id"]: r for r in _rows(out / "failures.csv")}
    assert sorted(failures) == ["broken", "white"]
    assert failures["broken"]["reason"].startswith("failed: ") and failures["broken"]["source"].endswith("broken.jpg")
    assert failures["white"]["reason"].startswith("empty: ")
    assert all(r["patient_id"] == sid for sid, r in failures.items())

    other = tmp_path / "other"
    write_tiny_slide(other / "e.jpg", offset=200, seed=21)  # another slide with the id 'e'
    collided = run_cli("predict", slide_run, other, "--out", out)
    assert collided.exit_code == 1, collided.stderr[-2000:]
    assert _rows(out / "predictions.csv") == []  # never scored from the first folder's e.jpg
    (row,) = _rows(out / "failures.csv")
    assert row["slide_id"] == "e" and "already in the cache from" in row["reason"]
    assert "--slide-id-prefix" in row["reason"]


def test_predict_without_a_finished_run_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"stale")
    result = run_cli("predict", tmp_path / "run", tmp_path, "--out", tmp_path / "p")
    one_error(result, "is not a finished train run (run.json is missing or unreadable; its checkpoint.pt may be stale")
