"""A tiny demo cohort shared by the demo tests (8 patients, generated once per session)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from balnmp_cache.demo import DemoSummary, write_demo_cohort


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> DemoSummary:
    """An 8-patient cohort (seed 0) with pyramidal TIFFs; tests must not modify it."""
    return write_demo_cohort(tmp_path_factory.mktemp("demo") / "cohort", patients=8, seed=0)


@pytest.fixture(scope="session")
def tiny_facts(tiny_cohort: DemoSummary) -> dict[str, Any]:
    """The cohort's ``demo-cohort.json``."""
    return json.loads((Path(tiny_cohort.root) / "demo-cohort.json").read_text(encoding="utf-8"))
