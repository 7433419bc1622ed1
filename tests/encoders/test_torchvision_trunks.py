"""The torchvision trunks give exactly what the official BALNMP extractor (or torchvision itself) gives."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from balnmp_cache.encoders import create_encoder


def _torchvision_twin(factory, encoder, **kwargs) -> nn.Module:
    """The full torchvision model holding the encoder's trunk weights; its classifier stays on the meta device.

    Built on the meta device (no time spent initialising) and filled with ``assign=True``.
    """
    with torch.device("meta"):
        reference = factory(weights=None, **kwargs)
    missing, unexpected = reference.load_state_dict(encoder.model.trunk.state_dict(), strict=False, assign=True)
    assert not unexpected and all(k.startswith(("fc.", "classifier.", "AuxLogits.")) for k in missing)
    if hasattr(reference, "fc"):
        reference.fc = nn.Identity()  # its pooled input is torchvision's feature
    return reference.eval()


def test_vgg16_bn_flatten_is_the_official_view(patches):
    encoder = create_encoder("vgg16_bn", weights="random", seed=4)
    reference = _torchvision_twin(tvm.vgg16_bn, encoder)
    official_extractor = nn.Sequential(*list(reference.children())[:-1])  # BackboneBuilder: children()[:-1]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        pool5 = official_extractor(x)  # (2, 512, 7, 7): AdaptiveAvgPool2d(7, 7) after features
        expected = pool5.view(-1, 25088)  # the official AttentionAggregator's reshape
        got = encoder.model(x)
        assert torch.equal(got, expected)
        assert torch.equal(got, torch.flatten(nn.Sequential(reference.features, reference.avgpool)(x), 1))
        assert torch.equal(got.view(2, 512, 7, 7)[:, 3], pool5[:, 3])  # channel-major order


def test_vgg16_bn_at_224_is_pool5_and_avg_mode_averages_it(patches):
    avg = create_encoder("vgg16_bn", mode="avg", weights="random", seed=4)
    with torch.inference_mode():
        x = avg.preprocess(patches[:1])
        assert x.shape == (1, 3, 224, 224)
        pool5 = avg.model.trunk.features(x)
        assert pool5.shape == (1, 512, 7, 7)
        assert torch.equal(avg.model.trunk.avgpool(pool5), pool5)  # AdaptiveAvgPool2d(7, 7) is the identity at 224
        torch.testing.assert_close(avg.model(x), pool5.mean(dim=(2, 3)))


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_avg_is_torchvisions_pooled_feature(name):
    encoder = create_encoder(name, weights="random", seed=1)
    reference = _torchvision_twin(getattr(tvm, name), encoder)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(encoder.model(x), reference(x), rtol=1e-5, atol=1e-5)


def test_densenet121_keeps_the_official_map_without_final_relu():
    encoder = create_encoder("densenet121", mode="flatten", weights="random", seed=1)
    reference = _torchvision_twin(tvm.densenet121, encoder)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        official = reference.features(x)  # ends with norm5, no ReLU
        assert torch.equal(encoder.model(x), torch.flatten(official, 1))
        assert (official < 0).any()  # the map keeps negative values a ReLU would remove


def test_inception_v3_transform_input_and_pooling_match_torchvision():
    encoder = create_encoder("inception_v3", weights="random", seed=1)
    assert encoder.model.trunk.transform_input
    reference = _torchvision_twin(tvm.inception_v3, encoder, aux_logits=False, init_weights=False, transform_input=True)
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        torch.testing.assert_close(encoder.model(x), reference(x), rtol=1e-5, atol=1e-5)


def test_alexnet_flatten_is_the_official_view():
    encoder = create_encoder("alexnet", weights="random", seed=1)
    reference = _torchvision_twin(tvm.alexnet, encoder)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        expected = nn.Sequential(*list(reference.children())[:-1])(x).view(-1, 9216)
        assert torch.equal(encoder.model(x), expected)
