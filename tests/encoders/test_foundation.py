"""Every foundation-model entry constructs with its model card's kwargs (on the meta device: shapes, tokens and
parameter counts without allocating 300M-1.1B parameters); ``slow``: on real random weights, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from timm.layers import GluMlp
from torch import nn

from balnmp_cache.encoders import create_encoder, get_spec, list_encoders
from balnmp_cache.encoders.foundation import H_OPTIMUS_MEAN, H_OPTIMUS_STD
from balnmp_cache.encoders.pooling import PooledEncoder
from balnmp_cache.encoders.registry import resolve_encoder

FOUNDATION = [name for name in list_encoders() if get_spec(name).hub_id is not None]

# name: (parameters, tokens out of a 224 px input (prefix + patches), prefix tokens, SwiGLU blocks, hub repo)
EXPECTED = {
    "uni": (303_350_784, 197, 1, False, "MahmoodLab/UNI"),
    "uni2_h": (681_394_176, 265, 9, True, "MahmoodLab/UNI2-h"),
    "virchow2": (631_239_424, 261, 5, True, "paige-ai/Virchow2"),
    "h_optimus_0": (1_134_774_272, 261, 5, True, "bioptimus/H-optimus-0"),
    "h_optimus_1": (1_134_774_272, 261, 5, True, "bioptimus/H-optimus-1"),
    "gigapath": (1_134_953_984, 197, 1, True, "prov-gigapath/prov-gigapath"),
    "phikon_v2": (303_351_808, 197, 1, False, "owkin/phikon-v2"),
}


def test_every_foundation_entry_is_checked():
    assert set(FOUNDATION) == set(EXPECTED)


@pytest.fixture(scope="module")
def meta_trunks() -> dict[str, nn.Module]:
    trunks = {}
    with torch.device("meta"):
        for name in FOUNDATION:
            trunks[name] = resolve_encoder(name)[1](False)
    return trunks


@pytest.mark.parametrize("name", FOUNDATION)
def test_entry_constructs_with_the_cards_architecture(name: str, meta_trunks):
    spec, trunk = get_spec(name), meta_trunks[name]
    n_params, n_tokens, prefix, swiglu, repo = EXPECTED[name]
    assert spec.hub_id == repo and spec.mpp == 0.5 and spec.input_px == 224
    assert sum(p.numel() for p in trunk.parameters()) == n_params
    assert trunk.num_prefix_tokens == prefix
    with torch.device("meta"):
        tokens = trunk(torch.empty(2, 3, 224, 224))
        assert tuple(tokens.shape) == (2, n_tokens, spec.channels)
        for mode in spec.modes:
            assert tuple(PooledEncoder(trunk, mode)(torch.empty(2, 3, 224, 224)).shape) == (2, spec.feature_dim(mode))
    blocks = getattr(trunk.model, "blocks", None)
    if blocks is not None:  # timm ViTs: LayerScale (init_values) everywhere, SwiGLU where the card says so
        assert all(hasattr(block.ls1, "gamma") for block in blocks)
        assert isinstance(blocks[0].mlp, GluMlp) == swiglu
        if swiglu:
            assert isinstance(blocks[0].mlp.act, nn.SiLU)


def test_cards_pooling_and_preprocessing():
    assert get_spec("virchow2").default_mode == "cls+mean" and get_spec("virchow2").feature_dim("cls+mean") == 2560
    assert all(get_spec(n).default_mode == "cls" for n in FOUNDATION if n != "virchow2")
    assert (get_spec("h_optimus_0").mean, get_spec("h_optimus_0").std) == (H_OPTIMUS_MEAN, H_OPTIMUS_STD)
    assert (get_spec("gigapath").interpolation, get_spec("gigapath").crop_pct) == ("bicubic", 0.875)  # 256 -> 224
    assert get_spec("uni").legacy_transform and not get_spec("virchow2").legacy_transform
    gated = {n for n in FOUNDATION if get_spec(n).gated}
    assert gated == set(FOUNDATION) - {"phikon_v2"}


def test_h_optimus_keeps_a_fixed_input_size(meta_trunks):
    assert not meta_trunks["h_optimus_0"].model.dynamic_img_size  # the card: dynamic_img_size=False
    assert meta_trunks["uni"].model.dynamic_img_size and meta_trunks["virchow2"].model.dynamic_img_size


@pytest.mark.slow
@pytest.mark.parametrize("name", FOUNDATION)
def test_foundation_model_on_random_weights(name: str, patches: np.ndarray):
    spec = get_spec(name)
    encoder = create_encoder(name, weights="random", seed=0)
    assert encoder.identifier.startswith(f"{name}:{spec.default_mode}:random:sha256=")
    with torch.inference_mode():
        features = encoder.model(encoder.preprocess(patches))
    assert features.shape == (2, spec.feature_dim(spec.default_mode)) and torch.isfinite(features).all()
    again = create_encoder(name, weights="random", seed=0)
    assert again.weights_sha256 == encoder.weights_sha256
