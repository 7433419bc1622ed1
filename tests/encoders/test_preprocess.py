"""Encoder.preprocess reproduces the official PIL Resize((224, 224)) + ToTensor + Normalize."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image
from torchvision import transforms

from balnmp_cache.encoders import IMAGENET_MEAN, IMAGENET_STD, create_encoder
from tests.conftest import shared_file

ONE_GREY_LEVEL = 1 / 255 / min(IMAGENET_STD)  # 0.0174 in normalised units
OFFICIAL = transforms.Compose(
    [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
)


@pytest.fixture(scope="module")
def encoder():
    return create_encoder("efficientnet_lite0", weights="random")


def _compare(encoder, rgb: np.ndarray) -> torch.Tensor:
    expected = OFFICIAL(Image.fromarray(rgb))
    got = encoder.preprocess(rgb[None])[0]
    assert got.shape == expected.shape == (3, 224, 224) and got.dtype == torch.float32
    return (got - expected).abs()


@pytest.mark.parametrize(
    "rgb",
    [
        skimage.data.immunohistochemistry()[:256, :256],
        skimage.data.chelsea()[:256, 100:356],
        np.random.default_rng(0).integers(0, 256, size=(256, 256, 3), dtype=np.uint8),
    ],
    ids=["ihc-tissue", "photo", "noise"],
)
def test_256_patches_match_pil_within_one_grey_level(encoder, rgb):
    diff = _compare(encoder, rgb)
    # Measured: max 0.0175 (one grey level), 0.25-0.3 % of values differ at all.
    assert float(diff.max()) <= ONE_GREY_LEVEL + 1e-4
    assert float((diff > 1e-4).float().mean()) < 0.01


def test_real_he_patch_matches_pil(encoder):
    crop = shared_file("balnmp_samples/N_plus_gt2/389510/389510_tumour_regions/389510_1.jpg")
    rgb = np.asarray(Image.open(crop).convert("RGB"))[:256, :256]
    diff = _compare(encoder, np.ascontiguousarray(rgb))
    assert float(diff.max()) <= ONE_GREY_LEVEL + 1e-4 and float((diff > 1e-4).float().mean()) < 0.01


def test_non_square_patches_are_squashed_like_pil(encoder):
    diff = _compare(encoder, skimage.data.coffee()[:300, :200])
    assert float(diff.max()) <= ONE_GREY_LEVEL + 1e-4
    assert float(diff.mean()) < 0.005


def test_input_size_patches_are_not_resampled(encoder):
    rgb = skimage.data.astronaut()[100:324, 100:324]
    torch.testing.assert_close(encoder.preprocess(rgb[None])[0], OFFICIAL(Image.fromarray(rgb)), rtol=0, atol=1e-6)


def test_numpy_and_torch_inputs_agree_and_bad_inputs_are_rejected(encoder, patches):
    torch.testing.assert_close(encoder.preprocess(patches), encoder.preprocess(torch.from_numpy(patches)))
    with pytest.raises(ValueError, match="uint8"):
        encoder.preprocess(patches.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(B, h, w, 3\)"):
        encoder.preprocess(patches[0])


@pytest.mark.parametrize(("interpolation", "crop_pct"), [("bicubic", 1.0), ("bicubic", 0.875), ("bilinear", 0.875)])
def test_bicubic_and_centre_crop_match_timms_eval_transform(interpolation, crop_pct):
    from timm.data import create_transform

    from balnmp_cache.encoders.pooling import preprocess_patches

    rgb = np.ascontiguousarray(skimage.data.immunohistochemistry()[:256, :256])
    mean, std = (0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517)
    timm_eval = create_transform(input_size=224, interpolation=interpolation, crop_pct=crop_pct, mean=mean, std=std)
    expected = timm_eval(Image.fromarray(rgb))
    got = preprocess_patches(rgb[None], input_px=224, mean=mean, std=std, interpolation=interpolation,
                             crop_pct=crop_pct)[0]
    diff = (got - expected).abs()
    # Measured: at most two grey levels (bicubic; one for bilinear), in under 1 % of values (torch's uint8
    # kernels vs PIL's).
    assert float(diff.max()) <= (2 if interpolation == "bicubic" else 1) / 255 / min(std) + 1e-4
    assert float((diff > 1e-4).float().mean()) < 0.01


def test_vit_pooling_matches_timms_own_heads():
    import timm

    from balnmp_cache.encoders.pooling import PooledEncoder
    from balnmp_cache.encoders.timm_hook import wrap_timm

    x = torch.randn(2, 3, 224, 224)
    args = dict(pretrained=False, num_classes=0, depth=2, embed_dim=64, num_heads=2, reg_tokens=3)
    with torch.random.fork_rng(devices=[]), torch.inference_mode():
        torch.manual_seed(0)
        token = timm.create_model("vit_tiny_patch16_224", global_pool="token", **args).eval()
        torch.manual_seed(0)
        avg = timm.create_model("vit_tiny_patch16_224", global_pool="avg", **args).eval()  # fc_norm after the pool
        torch.testing.assert_close(PooledEncoder(wrap_timm(token), "cls")(x), token(x), rtol=0, atol=1e-6)
        torch.testing.assert_close(PooledEncoder(wrap_timm(avg), "mean_tokens")(x), avg(x), rtol=0, atol=1e-6)
        assert not torch.allclose(PooledEncoder(wrap_timm(token), "mean_tokens")(x), token(x))
