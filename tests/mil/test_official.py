"""The ``balnmp`` head and ``load_official_head`` against an independent re-statement of the official code.

``OfficialAttentionAggregator`` and ``OfficialHead`` below restate ``code/models/mil_net.py``
(main at 578e70e) layer by layer, minus the backbone, operating on one bag at a time as the
official ``forward`` does. They are written without reference to our implementation.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from balnmp_cache.errors import ConfigError
from balnmp_cache.mil import OFFICIAL_HEAD_KEYS, create_head, load_official_head, split_official_state_dict

VGG_DIM = 25088  # 512 x 7 x 7, the flattened vgg16_bn pool5 map


class OfficialAttentionAggregator(nn.Module):
    """``AttentionAggregator(in_features_size, inner_feature_size=1, out_feature_size=256)``."""

    def __init__(self, in_features_size: int, inner_feature_size: int = 128, out_feature_size: int = 256) -> None:
        super().__init__()
        self.in_features_size = in_features_size
        self.fc1 = nn.Sequential(nn.Linear(in_features_size, out_feature_size), nn.Dropout(p=0.5), nn.ReLU())
        self.attention = nn.Sequential(
            nn.Linear(out_feature_size, inner_feature_size),
            nn.Dropout(p=0.5),
            nn.Tanh(),
            nn.Linear(inner_feature_size, 1),
            nn.Dropout(p=0.5),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.view(-1, self.in_features_size)
        x = self.fc1(x)
        a = self.attention(x)
        a = torch.transpose(a, 1, 0)
        a = F.softmax(a, dim=1)
        m = torch.mm(a, x)
        return m, a


class OfficialHead(nn.Module):
    """``MILNetWithClinicalData`` / ``MILNetImageOnly`` without ``image_feature_extractor``."""

    def __init__(self, num_classes: int, clinical_data_size: int = 5, expand_times: int = 10) -> None:
        super().__init__()
        self.clinical_data_size = clinical_data_size
        self.expand_times = expand_times
        self.attention_aggregator = OfficialAttentionAggregator(VGG_DIM, 1)
        self.classifier = nn.Sequential(
            nn.Linear(256 + clinical_data_size * expand_times, 64), nn.ReLU(), nn.Linear(64, num_classes)
        )

    def forward(
        self, bag_features: torch.Tensor, clinical_data: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m, attention = self.attention_aggregator(bag_features)
        if self.clinical_data_size:
            clinical_data = clinical_data.repeat(1, self.expand_times).float()
            m = torch.cat([m, clinical_data], dim=-1)
        return self.classifier(m), attention


def _official_checkpoint(num_classes: int, clinical: int, seed: int) -> tuple[OfficialHead, dict[str, torch.Tensor]]:
    """A random official head and its state dict with fake backbone tensors in both naming styles."""
    torch.manual_seed(seed)
    official = OfficialHead(num_classes, clinical).eval()
    state = dict(official.state_dict())
    state["image_feature_extractor.extractor.0.0.weight"] = torch.randn(64, 3, 3, 3)
    state["image_feature_extractor.extractor.0.1.running_mean"] = torch.randn(64)
    state["image_feature_extractor.0.0.bias"] = torch.randn(64)
    state["image_feature_extractor.0.1.num_batches_tracked"] = torch.tensor(7)
    return official, state


@pytest.mark.parametrize(("num_classes", "clinical"), [(2, 5), (3, 5), (2, 0)])
def test_loaded_head_matches_official_on_one_bag(tmp_path, num_classes, clinical):
    official, state = _official_checkpoint(num_classes, clinical, seed=num_classes * 10 + clinical)
    path = tmp_path / "best.pth"
    torch.save(state, path)

    head = load_official_head(path)
    assert not head.training
    assert (head.in_dim, head.n_classes, head.clinical_dim) == (VGG_DIM, num_classes, clinical)

    generator = torch.Generator().manual_seed(1)
    feats = torch.randn(10, VGG_DIM, generator=generator)  # one bag, N = 10
    clin = torch.randn(clinical, generator=generator, dtype=torch.float64) if clinical else None
    with torch.no_grad():
        # the official train.py passes a 1-D clinical vector; repeat(1, 10) makes it [1, 10K]
        want_logits, want_attention = official(feats, clin)
        got_logits, got_attention = head(feats[None], clinical=None if clin is None else clin.float()[None])
    assert got_logits.shape == (1, num_classes) and got_attention.shape == (1, 10)
    torch.testing.assert_close(got_attention, want_attention, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_logits, want_logits, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(got_attention, torch.full_like(got_attention, 0.1))  # attention is not trivial


def test_batch_and_padding_match_separate_official_calls():
    official, state = _official_checkpoint(2, 5, seed=3)
    head = load_official_head(state)
    generator = torch.Generator().manual_seed(2)
    lengths = [10, 4, 1, 7]
    batch, n_max = len(lengths), max(lengths)
    feats = torch.randn(batch, n_max, VGG_DIM, generator=generator)
    mask = torch.arange(n_max)[None, :] < torch.tensor(lengths)[:, None]
    feats[~mask] = 1e4  # padding content must not matter
    clin = torch.randn(batch, 5, generator=generator)
    with torch.no_grad():
        logits, attention = head(feats, mask, clin)
        for i, n in enumerate(lengths):
            want_logits, want_attention = official(feats[i, :n], clin[i])
            torch.testing.assert_close(logits[i : i + 1], want_logits, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(attention[i : i + 1, :n], want_attention, rtol=1e-5, atol=1e-6)
            assert torch.all(attention[i, n:] == 0)
            # the same bag alone and unpadded gives the same result
            alone_logits, alone_attention = head(feats[i : i + 1, :n], clinical=clin[i : i + 1])
            torch.testing.assert_close(alone_logits, logits[i : i + 1], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(alone_attention, attention[i : i + 1, :n], rtol=1e-5, atol=1e-6)
    assert attention[2, 0].item() == 1.0  # the single-patch bag


def test_our_balnmp_head_has_exactly_the_official_head_keys():
    official = OfficialHead(2, 5)
    ours = create_head("balnmp", in_dim=VGG_DIM, n_classes=2, clinical_dim=5)
    assert set(ours.state_dict()) == set(official.state_dict()) == set(OFFICIAL_HEAD_KEYS)
    for key, value in official.state_dict().items():
        assert ours.state_dict()[key].shape == value.shape, key
    assert sum(p.numel() for p in ours.parameters()) == 6_442_821  # balnmp.md §3.3
    ours.load_state_dict(official.state_dict())  # strict


def test_wrapped_and_dataparallel_checkpoints(tmp_path):
    _, state = _official_checkpoint(2, 5, seed=4)
    direct = load_official_head(state)
    wrapped = {"epoch": 42, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    path = tmp_path / "wrapped.pth"
    torch.save(wrapped, path)
    for source in (path, str(path), {"model": state}):
        head = load_official_head(source)
        for key, value in direct.state_dict().items():
            assert torch.equal(head.state_dict()[key], value), key


def test_split_official_state_dict_separates_both_backbone_namings():
    _, state = _official_checkpoint(2, 5, seed=5)
    head, backbone = split_official_state_dict({f"module.{k}": v for k, v in state.items()})
    assert set(head) == set(OFFICIAL_HEAD_KEYS)
    assert set(backbone) == {
        "image_feature_extractor.extractor.0.0.weight",
        "image_feature_extractor.extractor.0.1.running_mean",
        "image_feature_extractor.0.0.bias",
        "image_feature_extractor.0.1.num_batches_tracked",
    }
    assert torch.equal(head["classifier.2.bias"], state["classifier.2.bias"])


def test_missing_and_unexpected_head_keys_are_listed():
    _, state = _official_checkpoint(2, 5, seed=6)
    del state["classifier.2.bias"]
    state["attention_aggregator.gate.weight"] = torch.zeros(1)
    with pytest.raises(ConfigError) as info:
        load_official_head(state)
    assert "classifier.2.bias" in str(info.value) and "attention_aggregator.gate.weight" in str(info.value)


def _small_state(fused: int) -> dict[str, torch.Tensor]:
    return {
        "attention_aggregator.fc1.0.weight": torch.zeros(256, 32),
        "attention_aggregator.fc1.0.bias": torch.zeros(256),
        "attention_aggregator.attention.0.weight": torch.zeros(1, 256),
        "attention_aggregator.attention.0.bias": torch.zeros(1),
        "attention_aggregator.attention.3.weight": torch.zeros(1, 1),
        "attention_aggregator.attention.3.bias": torch.zeros(1),
        "classifier.0.weight": torch.zeros(64, fused),
        "classifier.0.bias": torch.zeros(64),
        "classifier.2.weight": torch.zeros(2, 64),
        "classifier.2.bias": torch.zeros(2),
    }


def test_inferred_dims_and_bad_clinical_width():
    head = load_official_head(_small_state(256 + 30))
    assert (head.in_dim, head.n_classes, head.clinical_dim) == (32, 2, 3)
    with pytest.raises(ConfigError, match="293"):
        load_official_head(_small_state(256 + 37))
    bad = _small_state(256)
    bad["attention_aggregator.attention.0.weight"] = torch.zeros(2, 256)
    with pytest.raises(ConfigError, match="do not fit"):
        load_official_head(bad)


def test_unreadable_checkpoints(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_official_head(tmp_path / "absent.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"garbage\.pth"):
        load_official_head(garbage)
    with pytest.raises(ConfigError, match="no tensors"):
        load_official_head({"epoch": 3})
