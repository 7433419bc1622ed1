"""hf-hub:ORG/NAME and hub-backed registry entries load from a local Hugging Face cache, offline, strictly.

Every test runs with HF_HUB_CACHE in tmp, HF_HUB_OFFLINE=1 and sockets refused (the ``hf_cache`` fixture);
the tiny ViT in the cache stands in for a foundation model.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torch import nn

from balnmp_cache.encoders import EncoderSpec, create_encoder, get_spec, register_encoder, weights_status
from balnmp_cache.encoders import registry as registry_module
from balnmp_cache.encoders.weights import file_sha256
from balnmp_cache.errors import EncoderError
from tests.encoders.hubcache import TINY_CFG, tiny_vit, write_snapshot

REPO = "test-org/tiny-vit"


def _features(encoder, patches: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        return encoder.model(encoder.preprocess(patches))


def _timm_reference(snapshot) -> nn.Module:
    """timm's own loader of a local snapshot (config.json + weights), independent of our code."""
    return timm.create_model(f"local-dir:{snapshot}", pretrained=True, num_classes=0).eval()


def test_hub_model_loads_offline_with_the_models_own_preprocessing(hf_cache, patches):
    snapshot = write_snapshot(hf_cache, REPO, tiny_vit(seed=1))
    encoder = create_encoder(f"hf-hub:{REPO}")
    spec = encoder.spec
    assert (spec.input_px, spec.interpolation, spec.crop_pct) == (224, "bicubic", 0.875)
    assert spec.mean == tuple(TINY_CFG["mean"]) and spec.std == tuple(TINY_CFG["std"])
    assert spec.modes == ("cls", "mean_tokens", "cls+mean") and encoder.mode == "cls" and encoder.feature_dim == 64
    assert encoder.weights == str(snapshot / "model.safetensors")
    assert encoder.weights_sha256 == file_sha256(snapshot / "model.safetensors")
    assert encoder.identifier == (
        f"hf-hub:{REPO}:cls:pretrained:sha256={encoder.weights_sha256[:12]}"
        ":pre=224px,bicubic,crop0.875,mean0.7/0.55/0.7,std0.2/0.23/0.18"
    )

    reference = _timm_reference(snapshot)
    x = encoder.preprocess(patches)
    with torch.inference_mode():  # same input tensor: the weights and the pooling are timm's exactly
        tokens = reference.forward_features(x)  # (B, 1 + 2 + 196, 64)
        torch.testing.assert_close(encoder.model(x), tokens[:, 0], rtol=0, atol=1e-6)
    # timm's own PIL eval transform of the same patches: within one grey level of ours
    transform = create_transform(**resolve_data_config(model=reference))
    pil = torch.stack([transform(Image.fromarray(p)) for p in patches])
    assert float((pil - x).abs().max()) <= 1 / 255 / min(TINY_CFG["std"]) + 1e-4
    with torch.inference_mode():
        direct = reference.forward_features(pil)[:, 0]
    assert float((direct - _features(encoder, patches)).abs().max()) < 0.05 * float(direct.abs().max())


def test_token_modes_exclude_register_tokens(hf_cache, patches):
    write_snapshot(hf_cache, REPO, tiny_vit(seed=1))
    both = create_encoder(f"hf-hub:{REPO}", mode="cls+mean")
    x = both.preprocess(patches)
    with torch.inference_mode():
        tokens = both.model.trunk.model.forward_features(x)  # (B, 199, 64): class, 2 registers, 196 patches
        expected = torch.cat([tokens[:, 0], tokens[:, 3:].mean(1)], dim=-1)  # Virchow's formula
        torch.testing.assert_close(both.model(x), expected, rtol=0, atol=1e-6)
    assert both.feature_dim == 128
    mean = create_encoder(f"hf-hub:{REPO}", mode="mean_tokens")
    torch.testing.assert_close(_features(mean, patches), expected[:, 64:], rtol=0, atol=1e-6)
    with pytest.raises(EncoderError, match=r"does not support mode 'avg'.*cls, mean_tokens, cls\+mean"):
        create_encoder(f"hf-hub:{REPO}", mode="avg")


def test_revision_picks_a_snapshot(hf_cache, patches):
    write_snapshot(hf_cache, REPO, tiny_vit(seed=1), commit="a" * 40, ref="main")
    write_snapshot(hf_cache, REPO, tiny_vit(seed=2), commit="b" * 40, ref="v2")
    main = create_encoder(f"hf-hub:{REPO}")
    tagged = create_encoder(f"hf-hub:{REPO}", revision="v2")
    by_commit = create_encoder(f"hf-hub:{REPO}", revision="b" * 40)
    assert "snapshots/" + "b" * 40 in tagged.weights and tagged.weights_sha256 == by_commit.weights_sha256
    assert tagged.weights_sha256 != main.weights_sha256 and tagged.identifier != main.identifier
    assert not torch.allclose(_features(main, patches), _features(tagged, patches))
    with pytest.raises(EncoderError, match="revision v3"):
        create_encoder(f"hf-hub:{REPO}", revision="v3")


def test_missing_files_name_the_model_the_file_and_the_fix(hf_cache):
    with pytest.raises(EncoderError) as info:
        create_encoder(f"hf-hub:{REPO}")
    message = str(info.value)
    assert "\n" not in message and f"hf-hub:{REPO}" in message
    assert f"{hf_cache}/models--test-org--tiny-vit/snapshots/<commit>/config.json" in message
    assert f"`hf download {REPO}`" in message

    write_snapshot(hf_cache, REPO, None)  # config.json without weights
    with pytest.raises(EncoderError) as info:
        create_encoder(f"hf-hub:{REPO}")
    assert "model.safetensors | pytorch_model.bin" in str(info.value) and "--weights PATH" in str(info.value)
    assert create_encoder(f"hf-hub:{REPO}", weights="random").random_weights  # the config alone builds it


def test_gated_registry_model_says_how_to_get_it(hf_cache):
    with pytest.raises(EncoderError) as info:
        create_encoder("uni")
    message = str(info.value)
    assert "\n" not in message and message.startswith("weights of uni not found")
    assert f"{hf_cache}/models--MahmoodLab--UNI/snapshots/<commit>/model.safetensors" in message
    assert "MahmoodLab/UNI is gated: accept the licence at https://huggingface.co/MahmoodLab/UNI" in message
    assert "`hf download MahmoodLab/UNI`" in message
    assert weights_status()["uni"].startswith("missing: weights of uni not found")


def test_pytorch_bin_and_weights_path_give_the_same_features(hf_cache, tmp_path, patches):
    model = tiny_vit(seed=3)
    snapshot = write_snapshot(hf_cache, REPO, model, weights_name="pytorch_model.bin")
    from_cache = create_encoder(f"hf-hub:{REPO}")
    assert from_cache.weights.endswith("pytorch_model.bin")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    from_file = create_encoder(f"hf-hub:{REPO}", weights=str(tmp_path / "w.safetensors"))
    assert from_file.identifier.split(":")[3] == "checkpoint"
    torch.testing.assert_close(_features(from_file, patches), _features(from_cache, patches), rtol=0, atol=0)
    assert (snapshot / "config.json").is_file()


def test_model_kwargs_are_strict_and_part_of_the_identifier(hf_cache, patches):
    write_snapshot(hf_cache, REPO, tiny_vit(seed=1))
    with pytest.raises(EncoderError, match=r"does not fit.*unexpected keys \(model\.blocks\.1\."):
        create_encoder(f"hf-hub:{REPO}", kwargs={"depth": 1})
    overlay = {"pretrained_cfg_overlay": {"crop_pct": 1.0, "interpolation": "bilinear"}}
    plain = create_encoder(f"hf-hub:{REPO}", kwargs=overlay)
    assert (plain.spec.crop_pct, plain.spec.interpolation) == (1.0, "bilinear")
    assert ":pre=" not in plain.identifier and plain.identifier.endswith(
        ':kwargs={"pretrained_cfg_overlay":{"crop_pct":1.0,"interpolation":"bilinear"}}'
    )
    assert not torch.allclose(_features(plain, patches), _features(create_encoder(f"hf-hub:{REPO}"), patches))


def test_registered_hub_encoder_is_one_decorator_and_loads_from_the_cache(hf_cache, patches):
    from balnmp_cache.encoders.timm_hook import timm_trunk

    spec = EncoderSpec(
        name="tiny_fm", input_px=224, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), channels=64, flatten_dim=None,
        modes=("cls", "mean_tokens", "cls+mean"), default_mode="cls+mean", weights_source="test", mpp=0.5,
        hub_id="test-org/tiny-fm", gated=True,
    )
    try:

        @register_encoder(spec)
        def tiny_fm(pretrained: bool, **kwargs) -> nn.Module:
            return timm_trunk("vit_tiny_patch16_224", num_classes=0, depth=2, embed_dim=64, num_heads=2,
                              reg_tokens=2, **kwargs)

        assert weights_status()["tiny_fm"].startswith("missing: weights of tiny_fm not found")
        snapshot = write_snapshot(hf_cache, "test-org/tiny-fm", tiny_vit(seed=4), config={})
        assert weights_status()["tiny_fm"] == f"available offline ({snapshot / 'model.safetensors'})"
        encoder = create_encoder("tiny_fm")
        assert encoder.identifier.startswith("tiny_fm:cls+mean:pretrained:sha256=") and encoder.feature_dim == 128
        assert get_spec("tiny_fm").mpp == 0.5
        with pytest.raises(EncoderError, match="has no Hugging Face weights"):
            create_encoder("resnet18", weights="random", revision="main")
    finally:
        registry_module._REGISTRY.pop("tiny_fm", None)


def test_offline_flag_is_set_only_while_building(hf_cache, monkeypatch):
    import os

    from balnmp_cache.encoders import hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    with hub.offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in os.environ
