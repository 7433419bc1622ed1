from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
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
    base = dict(
        sources=[Path(s) for s in sources], out=Path(out), encoder="efficientnet_lite0", batch_size=16, num_workers=2
    )
    base.update(overrides)
    return ExtractConfig(**base)


def write_precut_cohort(root: Path, sizes: list[int], *, seed: int = 0, prefix: str = "p") -> Path:
    """BCNB-style pre-cut patches ``root/patches/<pid>/<pid>_0_<x>_<y>.jpg``: patient i gets ``sizes[i]`` patches.

    The patches are 64-px JPEG crops of the real IHC image that ships with scikit-image, so each
    patient's features differ; returns ``root/patches``.
    """
    from PIL import Image
    from skimage import data

    image = data.immunohistochemistry()  # (512, 512, 3) uint8
    rng = np.random.default_rng(seed)
    folder = root / "patches"
    for i, n in enumerate(sizes):
        pid = f"{prefix}{i:03d}"
        (folder / pid).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            y, x = (int(v) for v in rng.integers(0, 512 - 64, 2))
            Image.fromarray(image[y : y + 64, x : x + 64]).save(folder / pid / f"{pid}_0_{64 * k}_0.jpg", quality=90)
    return folder
