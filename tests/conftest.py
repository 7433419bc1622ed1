"""Shared fixtures. Real third-party files live beside the project in ../shared/data and are never copied in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("BALNMP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real slides and images; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (set BALNMP_SHARED_DATA)")
    return SHARED_DATA


def shared_file(relative: str) -> Path:
    """Path of one real file under ../shared/data, skipping the test when it is missing."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real test file {relative} not found under {SHARED_DATA}")
    return path
