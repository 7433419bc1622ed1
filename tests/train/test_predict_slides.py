"""``predict`` on slides: extraction with the run's encoder settings, then the run's probabilities.

Slow: a real CNN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from balnmp_cache.train import PredictConfig, TrainConfig, run_predict, run_train

STAGES = Path(__file__).resolve().parents[2] / "stages"


@pytest.mark.slow
def test_predict_from_slides_extracts_like_the_run_and_reproduces_its_probabilities(tmp_path):
    from balnmp_cache.config import load_config
    from balnmp_cache.demo import write_demo_cohort
    from balnmp_cache.extract import ExtractConfig, run_extract

    root = tmp_path / "bcnb"
    write_demo_cohort(root, patients=15, seed=1, pyramidal=False)
    extract = load_config(ExtractConfig, STAGES / "extract.toml",
                          overrides={"sources": [str(root)], "out": str(tmp_path / "cache")})
    cache_dir = run_extract(extract).cache_dir
    run = run_train(TrainConfig(cache=cache_dir, cohort=root, out=tmp_path / "run", split="kfold", folds=3, epochs=2,
                                patience=2, lr=1e-3, threads=1, device="cpu"))

    patients = ["2", "7"]
    result = run_predict(PredictConfig(run_dir=run.run_dir, sources=[root / "WSIs" / f"{pid}.jpg" for pid in patients],
                                       cohort=root, top_k=3, out=tmp_path / "predict"))
    assert any((tmp_path / "predict" / "cache").iterdir()), "the slides were not extracted into <out>/cache"
    assert [r.patient_id for r in result.rows] == patients
    trained = pd.read_csv(run.run_dir / "predictions.csv", dtype={"patient_id": str}).set_index("patient_id")
    for row in result.rows:
        np.testing.assert_allclose(row.probabilities, trained.loc[row.patient_id, ["p_0", "p_1"]], atol=1e-4)
        assert all(key.startswith(f"patches/{row.patient_id}/") or row.patient_id in key for key, _ in row.top_patches)
