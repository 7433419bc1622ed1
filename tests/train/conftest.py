"""Fixtures of the stage-2 tests: small synthetic studies written through the real feature store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from balnmp_cache.train import TrainConfig
from tests.support.synthetic import SyntheticStudy, make_study


def train_config(study: SyntheticStudy, out: Path, **overrides: Any) -> TrainConfig:
    """A quick configuration on ``study``: few epochs, one CPU thread (robust on a busy 2-core machine)."""
    values: dict[str, Any] = {
        "cache": study.cache_dir, "cohort": study.cohort_csv, "out": out, "epochs": 6, "patience": 6,
        "lr": 2e-3, "batch_bags": 16, "threads": 1, "device": "cpu",
    }
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> SyntheticStudy:
    """80 patients, 8-d float16 features, 5..60 patches each, a strong planted signal."""
    return make_study(tmp_path_factory.mktemp("study"), n_patients=80, dim=8, signal=2.0, seed=3)
