"""``MILHead.patch_scores``: per-patch outputs that equal what the contract gives, for every registered head."""

from __future__ import annotations

import pytest
import torch

from balnmp_cache.mil import create_head, head_spec, list_heads

D, K, C, N = 12, 5, 2, 7
IMAGE_HEADS = [name for name in list_heads() if head_spec(name).uses_features]
ATTENTION_HEADS = ["balnmp", "abmil", "gated_abmil"]


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=generator), torch.randn(K, generator=generator)


@pytest.mark.parametrize("clinical_dim", [0, K])
@pytest.mark.parametrize("name", IMAGE_HEADS)
def test_single_patch_logits_equal_one_patch_bags_through_forward(name, clinical_dim):
    torch.manual_seed(0)
    head = create_head(name, in_dim=D, n_classes=C, clinical_dim=clinical_dim).eval()
    features, clinical = _inputs()
    clin = clinical if clinical_dim else None
    with torch.inference_mode():
        logits, attention_logits = head.patch_scores(features, clin)
        for i in range(N):
            alone, _ = head(features[i : i + 1].unsqueeze(0), None, None if clin is None else clin[None])
            torch.testing.assert_close(logits[i], alone[0])
    assert logits.shape == (N, C)
    assert (attention_logits is not None) == (name in ATTENTION_HEADS)


@pytest.mark.parametrize("name", ATTENTION_HEADS)
def test_attention_logits_give_the_bag_softmax_whatever_the_bag(name):
    torch.manual_seed(1)
    head = create_head(name, in_dim=D, n_classes=C).eval()
    features, _ = _inputs(1)
    with torch.inference_mode():
        _, scores = head.patch_scores(features)
        assert scores is not None
        _, whole = head(features[None])
        _, first_three = head(features[None, :3])
    torch.testing.assert_close(whole[0], torch.softmax(scores, 0))
    torch.testing.assert_close(first_three[0], torch.softmax(scores[:3], 0))  # the same scores in another bag


def test_a_clinical_head_refuses_patch_scores_without_the_clinical_vector():
    head = create_head("balnmp", in_dim=D, n_classes=C, clinical_dim=K).eval()
    features, _ = _inputs()
    with pytest.raises(ValueError, match="clinical"):
        head.patch_scores(features)
