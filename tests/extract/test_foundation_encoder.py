"""Stage 1 with a foundation-model encoder from a local Hugging Face cache, offline, on a real Aperio slide.

Real foundation-model weights cannot be downloaded here, so a tiny ViT (2 blocks of 64, class token and two
register tokens) written into a temporary hub cache stands in for one; it goes through the very code path of
``--encoder hf-hub:ORG/NAME`` (and of a registered hub entry). The cached features are compared with timm's own
forward pass (timm's ``local-dir`` loader and its PIL eval transform) on the same patches read from the slide.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

from balnmp_cache.cache import read_manifest, read_slide
from balnmp_cache.cache.naming import cache_key
from balnmp_cache.encoders import EncoderSpec, register_encoder
from balnmp_cache.encoders import registry as registry_module
from balnmp_cache.encoders.timm_hook import timm_trunk
from balnmp_cache.extract import run_extract
from balnmp_cache.slides.readers import open_slide
from tests.conftest import shared_file
from tests.encoders.hubcache import isolate_hub, tiny_vit, write_snapshot
from tests.extract.conftest import config

REPO = "test-org/tiny-vit"
NO_CROP = {"pretrained_cfg_overlay": {"crop_pct": 1.0}}  # 224 px patches then reach the model unresampled


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    return isolate_hub(tmp_path, monkeypatch)


def _patches(svs, sf) -> np.ndarray:
    """(N, h, w, 3) uint8: the cached patches read again from the slide, with the reader extract used."""
    side = int(sf.attrs["patch_level0_px"])
    with open_slide(svs, backend=str(sf.attrs["reader"])) as reader:
        return np.stack([reader.read_region((int(x), int(y)), 0, (side, side)) for x, y in sf.coords])


def _timm_features(snapshot, patches: np.ndarray, overlay: dict | None = None, *, pool=lambda t: t[:, 0]):
    """timm alone: its local-dir loader, its PIL eval transform, forward_features, then ``pool``."""
    model = timm.create_model(f"local-dir:{snapshot}", pretrained=True, num_classes=0,
                              pretrained_cfg_overlay=overlay).eval()
    transform = create_transform(**resolve_data_config(model=model))
    batch = torch.stack([transform(Image.fromarray(p)) for p in patches])
    with torch.inference_mode():
        return pool(model.forward_features(batch)).numpy()


def test_hf_hub_extract_equals_a_direct_timm_forward(hub_cache, tmp_path):
    svs = shared_file("wsi/aperio_svs/CMU-1-Small-Region.svs")
    snapshot = write_snapshot(hub_cache, REPO, tiny_vit(seed=7))
    cfg = config([svs], tmp_path / "cache", encoder=f"hf-hub:{REPO}", patch_px=224, target_mpp=0.5,
                 encoder_kwargs=NO_CROP, dtype="float32", precision="fp32", device="cpu")
    result = run_extract(cfg)
    assert result.n_ok == 1, read_manifest(result.cache_dir)
    sf = read_slide(result.cache_dir / "CMU-1-Small-Region.h5")
    assert sf.attrs["patch_level0_px"] == 224 and sf.attrs["mpp"] == pytest.approx(0.499, abs=1e-3)  # 0.5: native
    assert sf.attrs["encoder_identifier"].startswith(f"hf-hub:{REPO}:cls:pretrained:sha256=")
    assert sf.attrs["input_px"] == 224 and list(sf.attrs["norm_mean"]) == pytest.approx([0.70, 0.55, 0.70])
    assert sf.attrs["weights"] == str(snapshot / "model.safetensors") and sf.features.shape == (sf.n_patches, 64)

    expected = _timm_features(snapshot, _patches(svs, sf), overlay=NO_CROP["pretrained_cfg_overlay"])
    diff = np.abs(sf.features - expected)
    print(f"hf-hub tiny ViT on CMU-1-Small-Region: {sf.n_patches} patches, max |diff| {diff.max():.2e}, "
          f"max |feature| {np.abs(expected).max():.2f}")
    assert float(diff.max()) < 1e-4


def test_registered_foundation_model_reads_at_its_own_resolution(hub_cache, tmp_path):
    svs = shared_file("wsi/aperio_svs/CMU-1-Small-Region.svs")
    spec = EncoderSpec(
        name="tiny_fm_extract", input_px=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), channels=64,
        flatten_dim=None, modes=("cls", "mean_tokens", "cls+mean"), default_mode="cls+mean", weights_source="test",
        interpolation="bicubic", mpp=1.0, hub_id="test-org/tiny-fm",
    )
    try:

        @register_encoder(spec)
        def tiny_fm_extract(pretrained: bool, **kwargs):
            return timm_trunk("vit_tiny_patch16_224", num_classes=0, depth=2, embed_dim=64, num_heads=2, reg_tokens=2)

        snapshot = write_snapshot(hub_cache, "test-org/tiny-fm", tiny_vit(seed=8))  # config.json for timm below
        cfg = config([svs], tmp_path / "cache", encoder="tiny_fm_extract", patch_px=224, dtype="float32",
                     precision="fp32", device="cpu")
        assert cfg.target_mpp == 1.0  # the spec's resolution, since neither --target-mpp nor --magnification
        result = run_extract(cfg)
        assert result.n_ok == 1, read_manifest(result.cache_dir)
        sf = read_slide(result.cache_dir / "CMU-1-Small-Region.h5")
        assert sf.attrs["encoder_mpp"] == 1.0 and sf.attrs["mpp"] == pytest.approx(1.0, rel=0.01)
        assert sf.attrs["patch_level0_px"] == round(224 * 1.0 / 0.499)  # 449 level-0 px, resampled to 224
        assert sf.features.shape == (sf.n_patches, 128)
        key = (result.cache_dir / "cache.json").read_text()
        assert '"target_mpp":1' in key and cache_key(json.loads(key)) == sf.attrs["cache_key"]

        overlay = {"mean": list(spec.mean), "std": list(spec.std), "crop_pct": 1.0, "interpolation": "bicubic"}
        expected = _timm_features(snapshot, _patches(svs, sf), overlay,
                                  pool=lambda t: torch.cat([t[:, 0], t[:, 3:].mean(1)], dim=-1))
        diff = np.abs(sf.features - expected)
        print(f"registered tiny FM at 1 um/px: {sf.n_patches} patches ({sf.attrs['patch_level0_px']} -> 224 px), "
              f"max |diff| {diff.max():.2e}, mean |diff| {diff.mean():.2e}, max |feature| {np.abs(expected).max():.2f}")
        # extract resamples the 449 px read to 224 px while reading; timm resizes 449 -> 224 with PIL's bicubic
        assert float(diff.max()) < 0.05 * float(np.abs(expected).max())

        magnified = run_extract(config([svs], tmp_path / "cache2", encoder="tiny_fm_extract", patch_px=224,
                                       magnification=20, dtype="float32", precision="fp32", device="cpu"))
        other = read_slide(magnified.cache_dir / "CMU-1-Small-Region.h5")
        assert other.attrs["patch_level0_px"] == 224  # --magnification replaces the encoder's resolution

        no_mpp = shared_file("wsi/aperio_svs/tcga-cr-7395-01a-01-ts1.svs")
        failed = run_extract(config([no_mpp], tmp_path / "cache3", encoder="tiny_fm_extract"))
        row = read_manifest(failed.cache_dir)[0]
        assert failed.exit_code == 1 and row.status == "failed" and "--slide-mpp" in row.reason
    finally:
        registry_module._REGISTRY.pop("tiny_fm_extract", None)


def test_config_takes_the_encoders_resolution_and_a_kwargs_table(tmp_path):
    from balnmp_cache.config import load_config
    from balnmp_cache.extract import ExtractConfig

    toml = tmp_path / "extract.toml"
    toml.write_text('encoder = "virchow2"\nmode = "cls"\n[encoder_kwargs.pretrained_cfg_overlay]\ncrop_pct = 1.0\n')
    cfg = load_config(ExtractConfig, toml)
    assert cfg.target_mpp == 0.5 and cfg.encoder_kwargs == {"pretrained_cfg_overlay": {"crop_pct": 1.0}}
    assert load_config(ExtractConfig, toml, {"magnification": 40}).target_mpp is None  # an explicit target wins
    assert load_config(ExtractConfig, toml, {"target_mpp": 0.25}).target_mpp == 0.25
    assert ExtractConfig().target_mpp is None and ExtractConfig(encoder="resnet50").target_mpp is None  # CNNs: native
    assert ExtractConfig(mode="cls+mean").mode == "cls+mean" and ExtractConfig().weights == "pretrained"


def test_cli_has_a_revision_flag_and_no_kwargs_flag():
    from typer.testing import CliRunner

    from balnmp_cache.cli import app

    out = CliRunner().invoke(app, ["extract", "--help"], env={"COLUMNS": "200"}).output
    assert "--encoder-revision" in out and "--encoder-kwargs" not in out and "cls+mean" in out
