"""Bad cohort data gives one clear error listing the offending rows, before any training starts."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from balnmp_cache.cache import ManifestRow, update_manifest
from balnmp_cache.errors import CohortError, ConfigError
from balnmp_cache.train import run_train

from .conftest import train_config


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _edited(study, tmp_path: Path, edit) -> Path:
    rows = _rows(study.cohort_csv)
    edit(rows)
    return _write(tmp_path / "cohort.csv", rows)


def _fails_before_training(study, tmp_path: Path, cohort: Path, match: str, *, cache: Path | None = None) -> str:
    out = tmp_path / "run"
    cfg = train_config(study, out, cohort=cohort, **({"cache": cache} if cache else {}))
    with pytest.raises(CohortError, match=match) as info:
        run_train(cfg)
    assert not (out / "run.json").exists() and not (out / "checkpoint.pt").exists()
    return str(info.value)


def test_blank_age_names_the_row(study, tmp_path):
    def edit(rows):
        rows[4]["age"] = ""

    msg = _fails_before_training(study, tmp_path, _edited(study, tmp_path, edit), r"row 6 \(patient 5\): age is blank")
    assert "1 problem" in msg


def test_non_numeric_age_names_the_value(study, tmp_path):
    def edit(rows):
        rows[0]["age"] = "sixty"

    cohort = _edited(study, tmp_path, edit)
    _fails_before_training(study, tmp_path, cohort, r"row 2 \(patient 1\): age is non-numeric 'sixty'")


def test_unknown_receptor_value(study, tmp_path):
    def edit(rows):
        rows[2]["her2"] = "Equivocal"

    cohort = _edited(study, tmp_path, edit)
    _fails_before_training(study, tmp_path, cohort, r"row 4 \(patient 3\): HER2 value 'Equivocal'")


def test_duplicate_patient_id(study, tmp_path):
    def edit(rows):
        rows.append(dict(rows[7]))

    _fails_before_training(study, tmp_path, _edited(study, tmp_path, edit), r"rows 9, 82: duplicate patient id '8'")


def test_patient_without_features_and_slide_without_patient_are_listed_together(study, tmp_path):
    def edit(rows):
        extra = dict(rows[0])
        extra["patient_id"] = "999"
        del rows[9]  # patient 10 has a cached slide but leaves the cohort
        rows.append(extra)

    msg = _fails_before_training(study, tmp_path, _edited(study, tmp_path, edit), "do not match")
    assert "row 81 (patient 999): no cached features (no slide of this patient in the cache)" in msg
    assert "cached slide 10 (patient '10'): the patient is not in the cohort" in msg
    assert "--cache" in msg and "remove the patients from the cohort" in msg


def test_missing_features_are_explained_by_the_manifest(study, tmp_path):
    cache = tmp_path / "cache" / study.cache_dir.name
    shutil.copytree(study.cache_dir, cache)
    update_manifest(cache, [ManifestRow(slide_id="999", patient_id="999", source="999.jpg", status="failed",
                                        reason="Corrupt JPEG data")])

    def edit(rows):
        extra = dict(rows[0])
        extra["patient_id"] = "999"
        rows.append(extra)

    _fails_before_training(study, tmp_path, _edited(study, tmp_path, edit),
                           r"patient 999\): no cached features \(slide 999 failed: Corrupt JPEG data\)", cache=cache)


def test_clinical_only_head_without_clinical_data_is_a_config_error(study, tmp_path):
    with pytest.raises(ConfigError, match=r"clinical_only.*--clinical"):
        run_train(train_config(study, tmp_path / "run", head="clinical_only", clinical=False))


def test_unknown_head_is_a_config_error(study, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown MIL head 'transmil'.*balnmp"):
        run_train(train_config(study, tmp_path / "run", head="transmil"))
