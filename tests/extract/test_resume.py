"""O(1) resume: a finished cache re-runs without torch and without opening its slide files; the encoder's
identity record is trusted only while its weights file is unchanged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from balnmp_cache.extract import run_extract
from balnmp_cache.extract.identity import identity_file, known_identity, remember_identity
from tests.extract.conftest import config, write_precut_cohort

REPO = Path(__file__).resolve().parents[2]

RERUN = """
import json, sys
from pathlib import Path
from balnmp_cache.extract import ExtractConfig, run_extract
def rchar():
    return int(next(l for l in open("/proc/self/io") if l.startswith("rchar")).split()[1])
config = ExtractConfig(sources=[Path(sys.argv[1])], out=Path(sys.argv[2]), batch_size=8, patch_px=64)
before = rchar()
result = run_extract(config)
print(json.dumps({"torch": "torch" in sys.modules, "h5py": "h5py" in sys.modules, "read": rchar() - before,
                  "skipped": result.n_skipped, "ok": result.n_ok, "exit": result.exit_code}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_a_finished_cache_re_runs_without_torch_and_without_reading_its_slide_files(tmp_path):
    patches = write_precut_cohort(tmp_path / "bcnb", [2] * 12)
    env = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    cli = [sys.executable, "-m", "balnmp_cache.cli", "extract", str(patches), "--out", str(tmp_path / "cache"),
           "--batch-size", "8", "--patch-px", "64"]
    subprocess.run(cli, check=True, capture_output=True, env=env)
    assert (tmp_path / "xdg" / "balnmp_cache" / "encoder-identities.json").is_file()
    cache_bytes = sum(p.stat().st_size for p in (tmp_path / "cache").rglob("*.h5"))
    done = subprocess.run([sys.executable, "-c", RERUN, str(patches), str(tmp_path / "cache")], check=True,
                          capture_output=True, text=True, env=env)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["skipped"], report["ok"], report["exit"]) == (12, 0, 0)
    assert report["torch"] is False and report["h5py"] is False  # no encoder built, no slide file opened
    assert report["read"] < cache_bytes / 2, report  # the manifest, the index and cache.json, not the slides


def _checkpoint(path: Path, seed: int) -> Path:
    import torch

    from balnmp_cache.encoders import create_encoder

    encoder = create_encoder("efficientnet_lite0", weights="random", seed=seed)
    torch.save(encoder.model.trunk.state_dict(), path)
    return path


def test_the_identity_record_is_dropped_when_the_weights_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    weights = _checkpoint(tmp_path / "weights.pt", seed=1)
    patches = write_precut_cohort(tmp_path / "bcnb", [2, 2])
    first = run_extract(config([patches], tmp_path / "cache", weights=str(weights), batch_size=4, patch_px=64))
    cfg = config([patches], tmp_path / "cache", weights=str(weights), batch_size=4, patch_px=64)
    recorded = known_identity(cfg)
    assert recorded is not None and recorded.weights == str(weights) and identity_file().is_file()
    again = run_extract(cfg)
    assert (again.n_skipped, again.n_ok, again.setup_seconds < first.setup_seconds) == (2, 0, True)

    _checkpoint(weights, seed=2)  # other weights under the same path
    assert known_identity(cfg) is None
    changed = run_extract(cfg)
    assert changed.cache_dir != first.cache_dir and changed.n_ok == 2  # another digest, another key
    assert known_identity(cfg) is not None and known_identity(cfg).weights_sha256 != recorded.weights_sha256


def test_random_weights_are_recorded_per_seed(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    from balnmp_cache.extract.encode import BatchEncoder

    cfg = config([tmp_path], tmp_path / "out", weights="random", encoder="resnet18")
    assert known_identity(cfg) is None
    identity = BatchEncoder.build(cfg).identity
    remember_identity(cfg, identity)
    assert known_identity(cfg) == identity
    assert known_identity(config([tmp_path], tmp_path / "out", weights="random", encoder="resnet18", seed=1)) is None
    kwargs = {"encoder_kwargs": {"pretrained_cfg_overlay": {"crop_pct": 1.0}}}
    assert known_identity(config([tmp_path], tmp_path / "out", weights="random", encoder="resnet18", **kwargs)) is None
    revised = config([tmp_path], tmp_path / "out", weights="random", encoder="resnet18", encoder_revision="v2")
    assert known_identity(revised) is None  # another revision may be other weights: built, not looked up
