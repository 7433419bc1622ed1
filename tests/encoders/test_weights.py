"""Weights sources: missing ImageNet files fail fast, hub-cache files and checkpoints load strictly."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.models as tvm

from balnmp_cache.encoders import create_encoder, weights_status
from balnmp_cache.encoders.torchvision_trunks import TORCHVISION_LAYOUTS, hub_weights
from balnmp_cache.errors import EncoderError

SMALL = torch.linspace(-2, 2, 2 * 3 * 64 * 64).reshape(2, 3, 64, 64)  # a cheap normalised input


def _run(encoder, x: torch.Tensor = SMALL) -> torch.Tensor:
    with torch.inference_mode():
        return encoder.model(x)


@pytest.mark.parametrize("name", sorted(TORCHVISION_LAYOUTS))
def test_missing_imagenet_weights_fail_fast_with_instructions(name, hub_dir):
    _, path, url = hub_weights(name)
    start = time.perf_counter()
    with pytest.raises(EncoderError) as info:
        create_encoder(name, weights="imagenet")
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert str(path) in message and url in message and "--weights PATH" in message and "--weights random" in message
    assert path.parent.parent == hub_dir


def test_imagenet_weights_load_from_the_hub_cache(hub_dir):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        reference = tvm.resnet18()
    _, path, _ = hub_weights("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    assert weights_status()["resnet18"] == f"available offline ({path})"

    encoder = create_encoder("resnet18", weights="imagenet")
    assert encoder.identifier.startswith("resnet18:avg:imagenet:sha256=") and not encoder.random_weights
    reference.fc = torch.nn.Identity()
    with torch.inference_mode():
        expected = reference.eval()(SMALL)
    torch.testing.assert_close(_run(encoder), expected, rtol=1e-5, atol=1e-5)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_full_torchvision_checkpoint_with_wrapper_and_prefix(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        reference = tvm.resnet18()
    path = tmp_path / "resnet18_ddp.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, path)

    encoder = create_encoder("resnet18", weights=path, mode="max")
    assert encoder.weights == str(path) and not encoder.random_weights
    assert encoder.weights_sha256 == _sha256(path)
    assert encoder.identifier == f"resnet18:max:checkpoint:sha256={_sha256(path)[:12]}"
    body = torch.nn.Sequential(*list(reference.children())[:-2]).eval()
    with torch.inference_mode():
        expected = body(SMALL).amax(dim=(2, 3))
    torch.testing.assert_close(_run(encoder), expected, rtol=1e-5, atol=1e-5)


def _official_state_dict(features: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """A BALNMP MILNetWithClinicalData state dict (balnmp.md §3.6) around the given vgg16_bn ``features``."""
    state = {f"{prefix}{key[len('features.'):]}": value for key, value in features.items()}
    state.update(
        {
            "attention_aggregator.fc1.0.weight": torch.zeros(256, 25088),
            "attention_aggregator.fc1.0.bias": torch.zeros(256),
            "attention_aggregator.attention.0.weight": torch.zeros(1, 256),
            "attention_aggregator.attention.0.bias": torch.zeros(1),
            "attention_aggregator.attention.3.weight": torch.zeros(1, 1),
            "attention_aggregator.attention.3.bias": torch.zeros(1),
            "classifier.0.weight": torch.zeros(64, 306),
            "classifier.0.bias": torch.zeros(64),
            "classifier.2.weight": torch.zeros(2, 64),
            "classifier.2.bias": torch.zeros(2),
        }
    )
    return state


@pytest.mark.parametrize(
    "prefix",
    ["image_feature_extractor.extractor.0.", "image_feature_extractor.0."],
    ids=["code-2022", "model-py-2021"],
)
def test_official_balnmp_checkpoint_backbone_loads_into_vgg16_bn(tmp_path, prefix):
    source = create_encoder("vgg16_bn", weights="random", seed=7)
    features = {k: v for k, v in source.model.trunk.state_dict().items() if k.startswith("features.")}
    assert len(features) == len(source.model.trunk.state_dict())  # avgpool has no parameters
    path = tmp_path / "best.pth"
    torch.save(_official_state_dict(features, prefix), path)

    loaded = create_encoder("vgg16_bn", weights=path)
    assert loaded.mode == "flatten" and loaded.feature_dim == 25088
    assert loaded.weights_sha256 == _sha256(path)
    out = _run(loaded)
    assert out.shape == (2, 25088)
    assert torch.equal(out, _run(source))


def test_mismatched_checkpoint_lists_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "lite0.pt"
    torch.save(create_encoder("efficientnet_lite0", weights="random").model.trunk.state_dict(), path)
    with pytest.raises(EncoderError) as info:
        create_encoder("resnet18", weights=path)
    message = str(info.value)
    assert "100 missing keys (conv1.weight, bn1.weight" in message
    assert "296 unexpected keys (_conv_stem.weight, _bn0.weight" in message
    assert "more" in message and "--weights" in message and "'resnet18'" in message


def test_shape_mismatch_is_an_encoder_error(tmp_path):
    state = create_encoder("resnet18", weights="random").model.trunk.state_dict()
    state["conv1.weight"] = torch.zeros(32, 3, 7, 7)
    path = tmp_path / "bad_shape.pt"
    torch.save(state, path)
    with pytest.raises(EncoderError, match=r"conv1\.weight"):
        create_encoder("resnet18", weights=path)


def test_unreadable_or_empty_checkpoints(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(EncoderError, match="cannot read weights file"):
        create_encoder("resnet18", weights=garbage)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 1}, empty)
    with pytest.raises(EncoderError, match="holds no state dict"):
        create_encoder("resnet18", weights=empty)


def test_legacy_densenet_keys_are_renamed(tmp_path):
    source = create_encoder("densenet121", weights="random", seed=2)
    legacy = {}
    for key, value in source.model.trunk.state_dict().items():
        for part in ("norm1", "relu1", "conv1", "norm2", "relu2", "conv2"):
            key = key.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        legacy[key] = value
    legacy = {k: v for k, v in legacy.items() if not k.endswith("num_batches_tracked")}  # as in the 2017 file
    legacy["classifier.weight"] = torch.zeros(1000, 1024)
    legacy["classifier.bias"] = torch.zeros(1000)
    assert any(".norm.1." in k for k in legacy)
    path = tmp_path / "densenet121-legacy.pth"
    torch.save(legacy, path)
    loaded = create_encoder("densenet121", weights=path)
    np.testing.assert_array_equal(_run(loaded).numpy(), _run(source).numpy())


def test_random_weights_do_not_touch_the_global_generator():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    create_encoder("resnet18", weights="random", seed=99)
    assert torch.equal(torch.rand(3), expected)
