"""SOURCE resolution: slide files, folders, BCNB roots, pre-cut patches, manifest CSVs."""

from __future__ import annotations

from pathlib import Path

import pytest

from balnmp_cache.errors import ConfigError
from balnmp_cache.slides import parse_patch_name, patch_key, resolve_sources


def touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture()
def bcnb_root(tmp_path: Path) -> Path:
    root = tmp_path / "BCNB"
    for pid in ("1", "2", "10"):
        touch(root / "WSIs" / f"{pid}.jpg")
        touch(root / "WSIs" / f"{pid}.json", b"{}")
        touch(root / "WSIs-pyramidal" / f"{pid}.tiff")
    touch(root / "patient-clinical-data.xlsx")
    return root


def test_bcnb_root_prefers_jpeg_then_pyramidal(bcnb_root: Path) -> None:
    jobs = resolve_sources([bcnb_root])
    assert [j.slide_id for j in jobs] == ["1", "2", "10"]  # natural order
    assert all(j.kind == "slide" and j.path.suffix == ".jpg" for j in jobs)
    assert jobs[2].patient_id == "10" and jobs[2].annotation == bcnb_root / "WSIs" / "10.json"
    assert jobs[0].mpp is None and jobs[0].patch_files == ()
    pyramidal = resolve_sources([bcnb_root], prefer="pyramidal")
    assert [j.path.name for j in pyramidal] == ["1.tiff", "2.tiff", "10.tiff"]
    assert pyramidal[0].annotation is None
    with pytest.raises(ConfigError, match="prefer must be one of jpeg, pyramidal"):
        resolve_sources([bcnb_root], prefer="png")  # type: ignore[arg-type]


def test_single_file_folder_and_dicom_folder(tmp_path: Path) -> None:
    slide = touch(tmp_path / "in" / "a.svs")
    touch(tmp_path / "in" / "a.geojson", b"[]")
    touch(tmp_path / "in" / "notes.txt")
    touch(tmp_path / "in" / "b.ome.tif")
    touch(tmp_path / "in" / "case9" / "level-0.dcm")
    touch(tmp_path / "in" / "case9" / "level-1.dcm")
    [job] = resolve_sources([slide])
    assert (job.slide_id, job.annotation) == ("a", tmp_path / "in" / "a.geojson")
    jobs = resolve_sources([tmp_path / "in"])
    assert [(j.slide_id, j.path.name) for j in jobs] == [("a", "a.svs"), ("b", "b.ome.tif"), ("case9", "case9")]
    [dicom] = resolve_sources([tmp_path / "in" / "case9"])
    assert dicom.path == tmp_path / "in" / "case9"


def test_precut_patches_one_job_per_patient(tmp_path: Path) -> None:
    for name in ("71_1_0_256.jpg", "71_0_256_0.jpg", "71_0_0_0.jpg", "71_0_0_256.jpg"):
        touch(tmp_path / "data" / "patches" / "71" / name)
    touch(tmp_path / "data" / "patches" / "8" / "8_2_512_0.jpg")
    touch(tmp_path / "data" / "patches" / "8" / "thumbs.db")
    for source in (tmp_path / "data", tmp_path / "data" / "patches"):
        jobs = resolve_sources([source])
        assert [(j.slide_id, j.kind) for j in jobs] == [("8", "patches"), ("71", "patches")]
        names = ["71_0_0_0.jpg", "71_0_256_0.jpg", "71_0_0_256.jpg", "71_1_0_256.jpg"]
        assert [f.name for f in jobs[1].patch_files] == names
        assert [f.name for f in jobs[0].patch_files] == ["8_2_512_0.jpg"]
    assert patch_key(jobs[1].patch_files[3]) == "patches/71/71_1_0_256.jpg"
    assert parse_patch_name(jobs[1].patch_files[3]) == ("71", 1, 0, 256)
    with pytest.raises(ConfigError, match="not named"):
        parse_patch_name(Path("71_a_0_0.jpg"))


def test_manifest_csv(tmp_path: Path) -> None:
    touch(tmp_path / "slides" / "s1.svs")
    touch(tmp_path / "slides" / "s2.jpg")
    touch(tmp_path / "ann" / "s2-polygons.json", b"{}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "slide_path,patient_id,annotation_path,mpp\n"
        "slides/s2.jpg,P1,ann/s2-polygons.json,0.46\n"
        "slides/s1.svs,P1,,\n",
        encoding="utf-8",
    )
    jobs = resolve_sources([manifest])
    assert [(j.slide_id, j.patient_id, j.mpp) for j in jobs] == [("s1", "P1", None), ("s2", "P1", 0.46)]
    assert jobs[1].annotation == (tmp_path / "ann" / "s2-polygons.json").resolve()
    assert jobs[0].path == (tmp_path / "slides" / "s1.svs").resolve()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("path,patient_id\nslides/s1.svs,P\n", "lacks column.*slide_path.*it has path, patient_id"),
        ("slide_path,patient_id\nslides/s1.svs,P\nslides/missing.svs,Q\n",
         r"line 3: slide_path 'slides/missing.svs' does not exist"),
        ("slide_path,patient_id\nslides/s1.svs,\n", "line 2: slide_path and patient_id must not be empty"),
        ("slide_path,patient_id,mpp\nslides/s1.svs,P,-3\n", "line 2: mpp must be a positive number"),
        ("slide_path,patient_id,annotation_path\nslides/s1.svs,P,nope.json\n",
         "line 2: annotation_path 'nope.json' does not exist"),
        ("slide_path,patient_id\n", "has no rows"),
    ],
)
def test_manifest_errors_name_the_row(tmp_path: Path, content: str, problem: str) -> None:
    touch(tmp_path / "slides" / "s1.svs")
    manifest = tmp_path / "m.csv"
    manifest.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem) as info:
        resolve_sources([manifest])
    assert str(manifest) in str(info.value)


def test_duplicate_ids_are_listed(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "7.jpg")
    touch(tmp_path / "b" / "7.tiff")
    touch(tmp_path / "b" / "8.tiff")
    touch(tmp_path / "b" / "8.svs")
    with pytest.raises(ConfigError, match="duplicate slide ids") as info:
        resolve_sources([tmp_path / "a", tmp_path / "b"])
    message = str(info.value)
    assert "7: " in message and "8: " in message and "7.jpg" in message and "8.svs" in message


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_sources([tmp_path / "absent"])
    touch(tmp_path / "empty" / "readme.txt")
    with pytest.raises(ConfigError, match="no slides found in folder"):
        resolve_sources([tmp_path / "empty"])
    with pytest.raises(ConfigError, match="is not a slide or a manifest"):
        resolve_sources([tmp_path / "empty" / "readme.txt"])
    with pytest.raises(ConfigError, match="no SOURCE given"):
        resolve_sources([])
