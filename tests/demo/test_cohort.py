"""The demo cohort's files: BCNB layout, annotation JSON, clinical table, splits, folder guard, progress."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from balnmp_cache.demo import DEFAULT_PATIENTS, DemoSummary, write_demo_cohort
from balnmp_cache.errors import ConfigError
from balnmp_cache.progress import ProgressEvent

BCNB_COLUMNS = [
    "Patient ID", "Age(years)", "Tumour Size(cm)", "Tumour Type", "ER", "PR", "HER2", "HER2 Expression",
    "Histological grading", "Surgical", "Ki67", "Molecular subtype", "Number of lymph node metastases",
    "ALN status",
]


def test_layout_matches_bcnb(tiny_cohort: DemoSummary) -> None:
    root = Path(tiny_cohort.root)
    ids = [str(i) for i in range(1, 9)]
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["WSIs", "WSIs-pyramidal", "patient-clinical-data.xlsx", "dataset-splitting", "README.txt",
         "demo-cohort.json"])
    assert sorted(p.name for p in (root / "WSIs").iterdir()) == sorted(
        [f"{i}.jpg" for i in ids] + [f"{i}.json" for i in ids])
    assert sorted(p.name for p in (root / "WSIs-pyramidal").iterdir()) == sorted(
        [f"{i}.tiff" for i in ids] + [f"{i}.json" for i in ids])
    assert sorted(p.name for p in (root / "dataset-splitting").iterdir()) == [
        "test_id.txt", "train_id.txt", "val_id.txt"]
    assert "SYNTHETIC" in (root / "README.txt").read_text(encoding="utf-8")
    assert tiny_cohort.n_patients == 8 and tiny_cohort.n_slides_jpeg == 8 and tiny_cohort.n_slides_tiff == 8
    assert sum(tiny_cohort.class_counts.values()) == 8 and min(tiny_cohort.class_counts.values()) >= 1
    assert 10 * 8 <= tiny_cohort.n_patches <= 69 * 8
    assert 100 <= DEFAULT_PATIENTS <= 150


def test_jpeg_slides_are_plain_rgb_without_mpp(tiny_cohort: DemoSummary) -> None:
    with Image.open(Path(tiny_cohort.root) / "WSIs" / "1.jpg") as image:
        assert image.format == "JPEG" and image.mode == "RGB"
        assert min(image.size) >= 500 and max(image.size) <= 8000
        assert not image.getexif()  # no resolution or other EXIF tags, like BCNB
        assert "dpi" not in image.info or image.info["dpi"] == (1, 1)


def test_annotations_are_bcnb_polygons(tiny_cohort: DemoSummary, tiny_facts: dict[str, Any]) -> None:
    root = Path(tiny_cohort.root)
    n_regions = []
    for pid in range(1, 9):
        text = (root / "WSIs" / f"{pid}.json").read_text(encoding="utf-8")
        assert text == (root / "WSIs-pyramidal" / f"{pid}.json").read_text(encoding="utf-8")
        data = json.loads(text)
        assert set(data) == {"positive", "negative"} and data["negative"] == []
        for i, region in enumerate(data["positive"]):
            assert region["name"] == f"Annotation {i}"
            assert len(region["vertices"]) >= 10
            assert all(len(v) == 2 and all(type(c) is int for c in v) for v in region["vertices"])
        n_regions.append(len(data["positive"]))
        assert tiny_facts["patients"][str(pid)]["n_regions"] == len(data["positive"])
    # Patient 1 always has a polygon running past the image border, like BCNB's issue #6.
    width = tiny_facts["patients"]["1"]["width"]
    height = tiny_facts["patients"]["1"]["height"]
    vertices = np.concatenate([np.array(r["vertices"]) for r in
                               json.loads((root / "WSIs" / "1.json").read_text())["positive"]])
    assert (vertices < 0).any() or (vertices[:, 0] >= width).any() or (vertices[:, 1] >= height).any()
    with Image.open(root / "WSIs" / "1.jpg") as image:
        assert image.size == (width, height)


def test_clinical_table_has_bcnb_columns_and_values(tiny_cohort: DemoSummary, tiny_facts: dict[str, Any]) -> None:
    import pandas as pd

    table = pd.read_excel(Path(tiny_cohort.root) / "patient-clinical-data.xlsx")
    assert list(table.columns) == BCNB_COLUMNS
    assert table["Patient ID"].tolist() == list(range(1, 9))
    assert not table.isna().any().any()
    for column in ("ER", "PR", "HER2"):
        assert set(table[column]) <= {"Positive", "Negative"}
    assert set(table["HER2 Expression"].astype(str)) <= {"0", "1+", "2+", "3+"}
    assert set(table["Histological grading"]) <= {1, 2, 3}
    assert set(table["Molecular subtype"]) <= {"Luminal A", "Luminal B", "HER2(+)", "Triple negative"}
    assert table["Ki67"].between(0, 1).all() and table["Age(years)"].between(18, 95).all()
    assert table["Tumour Size(cm)"].between(0.5, 7.0).all()
    nodes = table["Number of lymph node metastases"]
    expected = np.where(nodes == 0, "N0", np.where(nodes <= 2, "N+(1-2)", "N+(>2)"))
    assert (table["ALN status"] == expected).all()
    assert table["ALN status"].tolist() == [tiny_facts["patients"][str(p)]["aln_status"] for p in range(1, 9)]
    counts = table["ALN status"].value_counts().to_dict()
    assert counts == tiny_cohort.class_counts


def test_splits_partition_the_patients(tiny_cohort: DemoSummary) -> None:
    folder = Path(tiny_cohort.root) / "dataset-splitting"
    split = {name: [int(line) for line in (folder / f"{name}_id.txt").read_text().split()]
             for name in ("train", "val", "test")}
    everyone = sorted(split["train"] + split["val"] + split["test"])
    assert everyone == list(range(1, 9))
    assert {k: len(v) for k, v in split.items()} == tiny_cohort.split_counts
    assert len(split["train"]) >= len(split["val"]) and split["val"] and split["test"]


def test_splits_are_stratified_in_the_default_size() -> None:
    from balnmp_cache.demo.clinical import assign_labels, assign_splits

    rng = np.random.default_rng(0)
    labels = assign_labels(rng, 120)
    assert [labels.count(c) for c in ("N0", "N+(1-2)", "N+(>2)")] == [74, 24, 22]
    split = assign_splits(rng, labels)
    for cls in ("N0", "N+(1-2)", "N+(>2)"):
        members = [split[pid] for pid, label in enumerate(labels, start=1) if label == cls]
        assert 0.15 <= members.count("test") / len(members) <= 0.25
        assert 0.15 <= members.count("val") / len(members) <= 0.25


def test_refuses_foreign_or_different_folders(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a demo cohort"):
        write_demo_cohort(foreign, patients=3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        write_demo_cohort(tmp_path / "file", patients=3)
    with pytest.raises(ConfigError, match="--patients"):
        write_demo_cohort(tmp_path / "new", patients=2)
    with pytest.raises(ConfigError, match="--seed"):
        write_demo_cohort(tmp_path / "new", patients=3, seed=-1)
    assert not (tmp_path / "new").exists()


def test_rewrites_only_the_same_cohort(tmp_path: Path) -> None:
    out = tmp_path / "cohort"
    out.mkdir()
    (out / "demo-data.log").write_text("the CLI opens its log file in the folder before generation\n")
    events: list[ProgressEvent] = []
    first = write_demo_cohort(out, patients=3, seed=5, pyramidal=False, progress=events.append)
    assert first.n_slides_tiff == 0 and not (out / "WSIs-pyramidal").exists()
    assert [e.kind for e in events] == ["start", "advance", "advance", "advance", "end"]
    assert events[0].task == "patients" and events[0].total == 3
    before = (out / "WSIs" / "2.jpg").read_bytes()
    again = write_demo_cohort(out, patients=3, seed=5, pyramidal=False)
    assert again.class_counts == first.class_counts
    assert (out / "WSIs" / "2.jpg").read_bytes() == before
    for other in ({"patients": 4, "seed": 5, "pyramidal": False}, {"patients": 3, "seed": 6, "pyramidal": False},
                  {"patients": 3, "seed": 5, "pyramidal": True}):
        with pytest.raises(ConfigError, match="already holds a demo cohort"):
            write_demo_cohort(out, **other)
    assert json.loads((out / "demo-cohort.json").read_text())["arguments"] == {
        "patients": 3, "seed": 5, "pyramidal": False}
