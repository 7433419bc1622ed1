from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from balnmp_cache.demo import write_demo_cohort
from balnmp_cache.extract import ExtractConfig


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A 4-patient demo cohort (JPEG + pyramidal TIFF), written once per session."""
    root = tmp_path_factory.mktemp("demo") / "bcnb"
    write_demo_cohort(root, patients=4, seed=3)
    return root


@pytest.fixture()
def small_cohort(tmp_path, demo_root) -> Path:
    """A private copy of two slides of the demo cohort (BCNB layout), safe to modify."""
    root = tmp_path / "bcnb"
    for folder in ("WSIs", "WSIs-pyramidal"):
        (root / folder).mkdir(parents=True)
        for pid in ("1", "2"):
            for src in (demo_root / folder).glob(f"{pid}.*"):
                shutil.copy(src, root / folder / src.name)
    return root


def config(sources, out, **overrides) -> ExtractConfig:
    """An extract config for tests: the real EfficientNet-Lite0 (fast on the CPU), small batches."""
    base = dict(sources=[Path(s) for s in sources], out=Path(out), encoder="efficientnet_lite0", batch_size=16, num_workers=2)
    base.update(overrides)
    return ExtractConfig(**base)
