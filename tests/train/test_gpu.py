"""Training on a GPU (run with ``-m gpu`` on a CUDA machine)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from balnmp_cache.train import PredictConfig, run_predict, run_train

from .conftest import train_config

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def test_training_on_the_gpu_learns_and_writes_the_run(study, tmp_path):
    result = run_train(train_config(study, tmp_path / "gpu", device="cuda"))
    assert result.metrics["val"]["auc"] > 0.85
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["device"].startswith("cuda")
    pred = pd.read_csv(result.run_dir / "predictions.csv")
    np.testing.assert_allclose(pred[["p_0", "p_1"]].sum(axis=1), 1.0, atol=1e-6)
    predicted = run_predict(PredictConfig(run_dir=result.run_dir, sources=[study.cache_dir], cohort=study.cohort_csv,
                                          top_k=2, out=tmp_path / "p"))
    assert len(predicted.rows) == len(study.patient_ids)


def test_gpu_runs_of_one_seed_agree_closely(study, tmp_path):
    first = run_train(train_config(study, tmp_path / "a", device="cuda"))
    second = run_train(train_config(study, tmp_path / "b", device="cuda"))
    a = pd.read_csv(first.run_dir / "predictions.csv")
    b = pd.read_csv(second.run_dir / "predictions.csv")
    np.testing.assert_allclose(a["p_1"], b["p_1"], atol=1e-3)  # a GPU is not bit-exact, but close
