"""What the CLI imports to build its options stays light: no torch, h5py, zarr, pandas, matplotlib, cuCIM, OpenSlide."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "h5py", "zarr", "pandas", "matplotlib", "cucim", "openslide")


@pytest.mark.parametrize(
    "statement",
    [
        "import balnmp_cache.train.config",
        "from balnmp_cache.train import TrainConfig, PredictConfig, AblationGrid",
        "from balnmp_cache.mil import list_heads, head_spec; list_heads(); head_spec('clinical_only')",
        "import balnmp_cache.runs",
    ],
)
def test_light_imports(statement):
    code = f"import sys; {statement}; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_the_head_field_lists_the_built_in_heads_from_the_catalog():
    from balnmp_cache.mil import head_specs
    from balnmp_cache.train.config import TrainConfig

    built_in = [spec.name for spec in head_specs() if spec.module == "balnmp_cache.mil.heads"]
    assert len(built_in) == 6
    assert TrainConfig.model_fields["head"].description.startswith("MIL head: " + " | ".join(built_in))
