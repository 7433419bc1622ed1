"""Encoders through the CLI: extract from a local hub cache, one-line errors, and doctor's row per encoder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from balnmp_cache.cache import read_slide
from balnmp_cache.cli import app
from balnmp_cache.demo import write_demo_cohort
from balnmp_cache.encoders import get_spec, list_encoders
from tests.encoders.hubcache import tiny_vit, write_snapshot

REPO = "test-org/tiny-vit"


@pytest.fixture(scope="module")
def one_slide(tmp_path_factory) -> Path:
    """A folder holding one demo slide (a JPEG with its annotation), 21 patches of 224 px."""
    demo = tmp_path_factory.mktemp("demo") / "bcnb"
    write_demo_cohort(demo, patients=3, seed=3)
    folder = tmp_path_factory.mktemp("slides")
    for src in (demo / "WSIs").glob("1.*"):
        shutil.copy(src, folder / src.name)
    return folder


def _invoke(args: list[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COLUMNS", "400")
    return CliRunner().invoke(app, args)


def test_extract_hf_hub_offline_from_the_local_cache(hf_cache, one_slide, tmp_path, monkeypatch):
    snapshot = write_snapshot(hf_cache, REPO, tiny_vit(seed=5))
    result = _invoke(["extract", str(one_slide), "--out", str(tmp_path / "cache"), "--encoder", f"hf-hub:{REPO}",
                      "--patch-px", "224"], monkeypatch)
    assert result.exit_code == 0, result.output
    (cache,) = (tmp_path / "cache").glob("hf_hub_test_org_tiny_vit-cls-*")
    sf = read_slide(cache / "1.h5")
    assert sf.n_patches > 0 and sf.features.shape == (sf.n_patches, 64)
    assert sf.attrs["weights"] == str(snapshot / "model.safetensors")
    assert sf.attrs["encoder_identifier"].startswith(f"hf-hub:{REPO}:cls:pretrained:sha256=")


def _one_error_line(result) -> str:
    """The one line a user error prints (exit code 2; an exception escaping the CLI would exit 1)."""
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    (line,) = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("error: "), line
    return line


@pytest.mark.parametrize(
    ("args", "named", "listed"),
    [
        (["--encoder", "uni", "--mode", "avg"], "'avg'", "cls, mean_tokens, cls+mean"),
        (["--encoder", "virchow2", "--mode", "flatten"], "'flatten'", "cls, mean_tokens, cls+mean (default cls+mean)"),
        (["--encoder", "resnet18", "--mode", "cls"], "'cls'", "avg, max (default avg)"),
        (["--encoder", "vgg16_bn", "--mode", "mean_tokens"], "'mean_tokens'", "avg, max, flatten"),
        (["--encoder", f"hf-hub:{REPO}", "--mode", "max"], "'max'", "cls, mean_tokens, cls+mean"),
    ],
)
def test_an_invalid_pooling_is_one_line_listing_the_valid_ones(hf_cache, one_slide, tmp_path, monkeypatch, args, named,
                                                               listed):
    write_snapshot(hf_cache, REPO, tiny_vit(seed=5))
    result = _invoke(["extract", str(one_slide), "--out", str(tmp_path / "cache"), *args], monkeypatch)
    line = _one_error_line(result)
    assert f"mode {named}" in line and listed in line and "--mode" in line, line
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*-*-*"))  # no cache begun


@pytest.mark.parametrize("name", ["uni", "uni2_h", "virchow2", "h_optimus_0", "h_optimus_1", "gigapath", "phikon_v2"])
def test_missing_weights_are_one_line_naming_model_file_and_how_to_get_them(hf_cache, one_slide, tmp_path, monkeypatch,
                                                                            name):
    spec = get_spec(name)
    result = _invoke(["extract", str(one_slide), "--out", str(tmp_path / "cache"), "--encoder", name], monkeypatch)
    line = _one_error_line(result)
    folder = f"models--{spec.hub_id.replace('/', '--')}"
    assert line.startswith(f"error: weights of {name} not found: expected {hf_cache}/{folder}/snapshots/<commit>/")
    assert "model.safetensors | pytorch_model.bin" in line and f"`hf download {spec.hub_id}`" in line
    assert "--weights PATH" in line
    gate = f"{spec.hub_id} is gated: accept the licence at https://huggingface.co/{spec.hub_id}"
    assert (gate in line) == spec.gated and ("gated" in line) == spec.gated


def test_a_hub_model_without_its_config_or_a_bad_id_is_one_line(hf_cache, one_slide, tmp_path, monkeypatch):
    out = ["--out", str(tmp_path / "cache")]
    args = ["extract", str(one_slide), *out, "--encoder"]
    line = _one_error_line(_invoke([*args, "hf-hub:org/absent"], monkeypatch))
    assert f"{hf_cache}/models--org--absent/snapshots/<commit>/config.json" in line and "hf download org/absent" in line
    line = _one_error_line(_invoke([*args, "hf-hub:absent"], monkeypatch))
    assert "'absent' is not a Hugging Face repo id ORG/NAME" in line


def _doctor_entries(output: str) -> dict[str, str]:
    """doctor's table at 400 columns: check name -> its status, detail and fix (each name once)."""
    entries: dict[str, str] = {}
    for line in output.splitlines()[1:]:
        if match := re.match(r"(ok|warn|missing) +(.+?)(?: {2,}(.*))?$", line):
            name = match.group(2).strip()
            assert name not in entries, f"{name} listed twice"
            entries[name] = f"{match.group(1)} {match.group(3) or ''}"
        else:
            entries[name] += " " + line.strip()
    return entries


def test_doctor_has_one_row_per_encoder_with_its_weights_and_where_it_looks(hf_cache, hub_dir, monkeypatch):
    present = write_snapshot(hf_cache, "owkin/phikon-v2", tiny_vit(seed=2), config={})
    result = _invoke(["doctor"], monkeypatch)
    assert result.exit_code == 0, result.output
    entries = _doctor_entries(result.output)
    rows = {name.removeprefix("weights: ") for name in entries if name.startswith("weights: ")}
    assert rows == {*list_encoders(), "timm:* / hf-hub:*"}
    assert entries["Hugging Face cache"].startswith(f"ok {hf_cache} ($HF_HUB_CACHE; exists)")
    assert entries["weights: phikon_v2"] == f"ok available offline ({present / 'model.safetensors'})"
    for name in list_encoders():
        spec, entry = get_spec(name), entries[f"weights: {name}"]
        if spec.hub_id and name != "phikon_v2":
            folder = f"models--{spec.hub_id.replace('/', '--')}"
            assert entry.startswith(f"warn not in the Hugging Face cache: expected <cache>/{folder}/snapshots/"), entry
            assert f"fix: {spec.hub_id} is gated: accept the licence at https://huggingface.co/" in entry, entry
        elif name != "efficientnet_lite0" and name != "phikon_v2":  # torchvision: the file in the torch hub cache
            assert entry.startswith("warn not available offline fix: download https://download.pytorch.org/"), entry
            assert f"to {hub_dir}/checkpoints/" in entry, entry
    assert entries["weights: timm:* / hf-hub:*"].startswith("ok (timm ")
