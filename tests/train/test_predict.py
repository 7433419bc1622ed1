"""``predict``: a trained run applied to a feature cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from balnmp_cache.errors import CacheError, ConfigError
from balnmp_cache.train import PredictConfig, run_predict, run_train
from tests.support.synthetic import make_study

from .conftest import train_config


@pytest.fixture(scope="module")
def run(study, tmp_path_factory):
    return run_train(train_config(study, tmp_path_factory.mktemp("predict") / "run", epochs=3))


def test_predict_on_a_cache_reproduces_the_runs_probabilities(run, study, tmp_path):
    result = run_predict(PredictConfig(run_dir=run.run_dir, sources=[study.cache_dir.parent], cohort=study.cohort_csv,
                                       top_k=3, out=tmp_path / "p"))
    assert result.out == tmp_path / "p" and result.classes == ["N0", "N(+)"]
    assert [r.patient_id for r in result.rows] == study.patient_ids
    trained = pd.read_csv(run.run_dir / "predictions.csv", dtype={"patient_id": str}).set_index("patient_id")
    for row in result.rows:
        assert sum(row.probabilities) == pytest.approx(1.0)
        np.testing.assert_allclose(row.probabilities, trained.loc[row.patient_id, ["p_0", "p_1"]], atol=1e-6)
        weights = [w for _, w in row.top_patches]
        assert len(row.top_patches) == 3 and weights == sorted(weights, reverse=True)
        assert all(key.startswith(f"patches/{row.patient_id}/") for key, _ in row.top_patches)
    written = pd.read_csv(tmp_path / "p" / "predictions.csv", dtype={"patient_id": str})
    assert list(written.columns) == ["patient_id", "n_bags", "p_0", "p_1"]
    assert (written["n_bags"].to_numpy() == trained.loc[written["patient_id"], "n_bags"].to_numpy()).all()
    att = pd.read_csv(tmp_path / "p" / "attention.csv", dtype={"patient_id": str})
    top = att[att["patient_id"] == "1"].sort_values("attention", ascending=False).iloc[0]
    assert top["patch_key"] == result.rows[0].top_patches[0][0]


def test_clinical_run_needs_the_cohort(run, study, tmp_path):
    with pytest.raises(ConfigError, match="--cohort"):
        run_predict(
            PredictConfig(run_dir=run.run_dir, sources=[study.cache_dir], cohort=None, top_k=2, out=tmp_path / "p")
        )


def test_cache_of_another_encoder_is_refused(run, tmp_path):
    other = make_study(tmp_path / "other", n_patients=4, dim=4, n_patches=[12, 12, 12, 12])
    with pytest.raises(CacheError, match="4-d but the run was trained on 8-d"):
        run_predict(PredictConfig(run_dir=run.run_dir, sources=[other.cache_dir], cohort=other.cohort_csv, top_k=2,
                                  out=tmp_path / "p"))


def test_not_a_run_directory(tmp_path, study):
    with pytest.raises(ConfigError, match=r"is not a finished train run \(run\.json is missing or unreadable\)"):
        run_predict(PredictConfig(run_dir=tmp_path, sources=[study.cache_dir], top_k=2))
