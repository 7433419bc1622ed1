"""Stage configurations: every shipped file validates; unknown keys and bad values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from balnmp_cache.config import load_config, save_resolved
from balnmp_cache.errors import ConfigError
from balnmp_cache.extract.config import ExtractConfig
from balnmp_cache.train.config import TrainConfig

STAGES = Path(__file__).resolve().parents[1] / "stages"


def _model_for(path: Path):
    if path.parent.name == "ablations":
        from balnmp_cache.train.ablate import AblationGrid

        return AblationGrid
    if path.stem.startswith("report"):
        from balnmp_cache.report.config import ReportConfig

        return ReportConfig
    if path.stem.startswith("heatmap"):
        from balnmp_cache.heatmap.config import HeatmapConfig

        return HeatmapConfig
    from balnmp_cache.nuclei.config import NucleiConfig

    return {"extract": ExtractConfig, "train": TrainConfig, "nuclei": NucleiConfig}[path.stem.split("-")[0]]


@pytest.mark.parametrize("path", sorted(STAGES.rglob("*.toml")), ids=lambda p: str(p.relative_to(STAGES)))
def test_every_stage_file_validates(path):
    config = load_config(_model_for(path), path)
    assert config is not None


def test_stage_folder_has_one_config_per_stage():
    names = {p.name for p in STAGES.glob("*.toml")}
    assert {"extract.toml", "train.toml", "report.toml"} <= names
    assert any((STAGES / "ablations").glob("*.toml"))


def test_unknown_key_is_named_with_its_file(tmp_path):
    path = tmp_path / "extract.toml"
    path.write_text('sources = ["a"]\nencodr = "resnet18"\n')
    with pytest.raises(ConfigError) as info:
        load_config(ExtractConfig, path)
    assert "unknown key 'encodr'" in str(info.value)
    assert str(path) in str(info.value)
    assert "encoder" in str(info.value)  # the valid keys are listed


def test_bad_value_names_key_and_value(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('task = 9\noptimizer = "rmsprop"\n')
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, path)
    message = str(info.value)
    assert "key 'task'" in message and "9" in message
    assert "key 'optimizer'" in message and "rmsprop" in message


def test_flags_override_single_fields_and_none_overrides_nothing(tmp_path):
    path = tmp_path / "extract.toml"
    path.write_text('sources = ["a"]\nencoder = "resnet18"\npatch_px = 128\n')
    config = load_config(ExtractConfig, path, {"encoder": "efficientnet_lite0", "patch_px": None})
    assert config.encoder == "efficientnet_lite0" and config.patch_px == 128


def test_exclusive_targets_are_refused():
    with pytest.raises(ConfigError, match="either target_mpp"):
        load_config(ExtractConfig, None, {"target_mpp": 0.5, "magnification": 20})


def test_malformed_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("sources = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(ExtractConfig, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(ExtractConfig, tmp_path / "missing.toml")


def test_resolved_config_round_trips(tmp_path):
    config = load_config(TrainConfig, None, {"head": "abmil", "official_json": None, "clinical_extra": ["Ki67"]})
    written = save_resolved(config, tmp_path)
    again = load_config(TrainConfig, written)
    assert again == config
