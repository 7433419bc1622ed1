"""The MIL-head contract, checked for every registered head, and the registry's errors."""

from __future__ import annotations

import pytest
import torch

from balnmp_cache.errors import ConfigError
from balnmp_cache.mil import MILHead, catalog, create_head, head_options, head_spec, list_heads, register_head, registry
from balnmp_cache.mil.base import masked_softmax

D, K, C = 24, 5, 3
LENGTHS = [6, 1, 3]  # real patches per bag; bag 1 has a single patch
IMAGE_HEADS = [name for name in list_heads() if head_spec(name).uses_features]


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    n_max = max(LENGTHS)
    feats = torch.randn(len(LENGTHS), n_max, D, generator=generator)
    mask = torch.arange(n_max)[None, :] < torch.tensor(LENGTHS)[:, None]  # (B, N)
    clinical = torch.randn(len(LENGTHS), K, generator=generator)
    return feats, mask, clinical


def _head(name: str, clinical_dim: int, seed: int = 0) -> MILHead:
    torch.manual_seed(seed)
    return create_head(name, in_dim=D, n_classes=C, clinical_dim=clinical_dim)


def _cases() -> list[tuple[str, int]]:
    return [(name, k) for name in list_heads() for k in (0, K) if not (head_spec(name).needs_clinical and k == 0)]


@pytest.mark.parametrize(("name", "clinical_dim"), _cases())
def test_contract_shapes_and_attention(name, clinical_dim):
    head = _head(name, clinical_dim).eval()
    feats, mask, clinical = _batch()
    with torch.no_grad():
        logits, attention = head(feats, mask, clinical if clinical_dim else None)
    assert isinstance(head, MILHead) and head.name == name
    assert logits.shape == (len(LENGTHS), C) and attention.shape == mask.shape
    assert torch.isfinite(logits).all()
    assert attention.dtype == torch.float32
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(len(LENGTHS)))
    assert torch.all(attention[~mask] == 0)
    assert torch.all(attention[mask] >= 0)
    assert attention[1, 0].item() == 1.0  # a single real patch gets all the attention


@pytest.mark.parametrize(("name", "clinical_dim"), _cases())
def test_padding_and_batch_mates_do_not_change_a_bag(name, clinical_dim):
    head = _head(name, clinical_dim).eval()
    feats, mask, clinical = _batch(1)
    feats[~mask] = float("nan")  # padding content must never leak
    clin = clinical if clinical_dim else None
    with torch.no_grad():
        logits, attention = head(feats, mask, clin)
        assert torch.isfinite(logits).all()
        for i, n in enumerate(LENGTHS):
            alone_logits, alone_attention = head(
                feats[i : i + 1, :n], clinical=None if clin is None else clin[i : i + 1]
            )  # mask=None: all real
            torch.testing.assert_close(alone_logits, logits[i : i + 1], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(alone_attention, attention[i : i + 1, :n], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("name", "clinical_dim"), _cases())
def test_gradients_flow_to_parameters_and_real_patches_only(name, clinical_dim):
    head = _head(name, clinical_dim).train()
    feats, mask, clinical = _batch(2)
    feats.requires_grad_(True)
    torch.manual_seed(0)
    logits, _ = head(feats, mask, clinical if clinical_dim else None)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    for pname, param in head.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname
    assert sum(p.grad.abs().sum() for p in head.parameters()) > 0
    if not head_spec(name).uses_features:
        assert feats.grad is None or torch.all(feats.grad == 0)
    else:
        assert torch.all(feats.grad[~mask] == 0)
        assert feats.grad[mask].abs().sum() > 0


@pytest.mark.parametrize("name", IMAGE_HEADS)
def test_clinical_data_changes_the_logits(name):
    head = _head(name, K).eval()
    feats, mask, clinical = _batch(3)
    with torch.no_grad():
        a, _ = head(feats, mask, clinical)
        b, _ = head(feats, mask, clinical + 1.0)
    assert not torch.allclose(a, b)


def test_clinical_only_ignores_features():
    head = _head("clinical_only", K).eval()
    feats, mask, clinical = _batch(4)
    with torch.no_grad():
        a, attention = head(feats, mask, clinical)
        b, _ = head(torch.randn_like(feats) * 100, mask, clinical)
        c, _ = head(feats, mask, -clinical)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    torch.testing.assert_close(attention[0, : LENGTHS[0]], torch.full((LENGTHS[0],), 1 / LENGTHS[0]))
    assert sum(p.numel() for p in head.parameters()) == K * C + C  # a logistic regression


def test_clinical_tiling_is_block_wise():
    head = _head("balnmp", K).eval()
    first = head.classifier[0]
    feats, _, clinical = _batch(5)
    clinical = clinical.abs() + 0.1
    with torch.no_grad():
        first.weight.zero_()
        first.bias.zero_()
        first.weight[0, 256 + 1] = 1.0  # [c, c, ...]: position 1 is c[1] (interleaving would give c[0])
        first.weight[1, 256 + K + 2] = 1.0  # second block, position 2: c[2]
        first.weight[2, 256 + 9 * K + 4] = 1.0  # last block, last value: c[4]
        hidden = torch.zeros(len(LENGTHS), 64)
        hidden[:, 0], hidden[:, 1], hidden[:, 2] = clinical[:, 1], clinical[:, 2], clinical[:, 4]
        logits, _ = head(feats, clinical=clinical)
    torch.testing.assert_close(logits, head.classifier[2](hidden))


def test_max_head_attention_counts_won_dimensions():
    head = create_head("max", in_dim=D, n_classes=2, embed_dim=8).eval()
    feats, mask, _ = _batch(6)
    with torch.no_grad():
        _, attention = head(feats, mask)
        hidden = head.embed(feats)
    winners = hidden[0, : LENGTHS[0]].argmax(dim=0)  # (8,)
    want = torch.bincount(winners, minlength=LENGTHS[0]).float() / 8
    torch.testing.assert_close(attention[0, : LENGTHS[0]], want)


def test_masked_softmax_is_safe():
    scores = torch.tensor([[1e30, -1e30, 0.0], [5.0, 2.0, 1.0], [3.0, 3.0, 3.0]])
    mask = torch.tensor([[True, True, False], [False, False, False], [False, True, False]])
    weights = masked_softmax(scores, mask)
    assert torch.isfinite(weights).all()
    assert weights[0].tolist() == [1.0, 0.0, 0.0]
    assert weights[1].tolist() == [0.0, 0.0, 0.0]  # an empty bag gets zeros, not NaN
    assert weights[2].tolist() == [0.0, 1.0, 0.0]


def test_options_are_applied():
    head = create_head("abmil", in_dim=D, n_classes=2, clinical_dim=2, dropout=0.1, expand_times=3, embed_dim=16,
                       attn_dim=4, classifier_hidden=0)
    assert head.embed[0].out_features == 16 and head.attention_w.in_features == 4
    assert isinstance(head.classifier, torch.nn.Linear) and head.classifier.in_features == 16 + 2 * 3
    assert head.embed[2].p == 0.1
    assert create_head("balnmp", in_dim=D, n_classes=2).attention_aggregator.fc1[1].p == 0.5
    assert head_options("gated_abmil")["dropout"] == 0.25
    assert hasattr(create_head("gated_abmil", in_dim=D, n_classes=2), "attention_u")


def test_registry_errors_name_the_choices():
    with pytest.raises(ConfigError, match="valid heads are: abmil, balnmp"):
        create_head("transmil", in_dim=D, n_classes=2)
    with pytest.raises(ConfigError, match=r"'hidden'.*dropout=0.5, expand_times=10"):
        create_head("balnmp", in_dim=D, n_classes=2, hidden=128)
    with pytest.raises(ConfigError, match=r"dropout=1.5.*\[0, 1\)"):
        create_head("abmil", in_dim=D, n_classes=2, dropout=1.5)
    with pytest.raises(ConfigError, match="expand_times=0"):
        create_head("mean", in_dim=D, n_classes=2, expand_times=0)
    with pytest.raises(ConfigError, match="n_classes=1"):
        create_head("max", in_dim=D, n_classes=1)
    with pytest.raises(ConfigError, match="in_dim=0"):
        create_head("max", in_dim=0, n_classes=2)
    with pytest.raises(ConfigError, match="clinical_dim=0"):
        create_head("clinical_only", in_dim=D, n_classes=2)


def test_forward_rejects_wrong_inputs():
    head = _head("balnmp", K)
    feats, mask, clinical = _batch()
    with pytest.raises(ValueError, match="clinical"):
        head(feats, mask)
    with pytest.raises(ValueError, match=f"\\(B, N, {D}\\)"):
        head(feats[..., :-1], mask, clinical)
    with pytest.raises(ValueError, match="mask"):
        head(feats, mask.float(), clinical)
    with pytest.raises(ValueError, match="image-only"):
        _head("mean", 0)(feats, mask, clinical)


def test_float16_features_are_accepted():
    head = _head("abmil", 0).eval()
    feats, mask, _ = _batch(7)
    with torch.no_grad():
        want, _ = head(feats.half().float(), mask)
        got, _ = head(feats.half(), mask)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)],
)
def test_autocast_keeps_the_contract(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    feats, mask, clinical = _batch(8)
    feats, mask, clinical = feats.to(device), mask.to(device), clinical.to(device)
    for name in list_heads():
        head = _head(name, K).to(device).eval()
        with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16):
            logits, attention = head(feats, mask, clinical)
        assert torch.isfinite(logits).all(), name
        assert attention.dtype == torch.float32 and torch.all(attention[~mask] == 0), name
        torch.testing.assert_close(attention.sum(dim=1), torch.ones(len(LENGTHS), device=device))


def test_register_head_adds_a_head(monkeypatch):
    monkeypatch.setattr(registry, "_HEADS", dict(registry._HEADS))
    monkeypatch.setattr(catalog, "_SPECS", dict(catalog._SPECS))

    @register_head("first_patch")
    class FirstPatchHead(MILHead):
        def __init__(self, *, in_dim, n_classes, clinical_dim=0, expand_times=10):
            super().__init__(in_dim=in_dim, n_classes=n_classes, clinical_dim=clinical_dim, expand_times=expand_times)
            self.classifier = torch.nn.Linear(in_dim + self.fused_clinical_dim, n_classes)

        def pool(self, features, mask):
            attention = torch.zeros(mask.shape)
            attention[:, 0] = 1.0
            return features[:, 0], attention

    assert "first_patch" in list_heads()
    head = create_head("first_patch", in_dim=D, n_classes=2, clinical_dim=1)
    logits, _ = head(torch.randn(2, 3, D), clinical=torch.zeros(2, 1))
    assert logits.shape == (2, 2) and head.classifier.in_features == D + 10
    with pytest.raises(ValueError, match="already registered"):
        register_head("balnmp")(FirstPatchHead)


def test_catalog_lists_every_head_with_the_capabilities_of_its_class():
    for name in list_heads():
        head = create_head(name, in_dim=D, n_classes=2, clinical_dim=K)
        spec = head_spec(name)
        assert (spec.uses_features, spec.needs_clinical, spec.closed_form) == (
            head.uses_features, head.needs_clinical, head.closed_form), name
    assert not head_spec("balnmp").closed_form and head_spec("clinical_only").closed_form


def test_register_head_refuses_capabilities_that_disagree(monkeypatch):
    monkeypatch.setattr(registry, "_HEADS", dict(registry._HEADS))
    monkeypatch.setattr(catalog, "_SPECS", dict(catalog._SPECS))

    class Pooled(MILHead):
        def pool(self, features, mask):
            return features.mean(dim=1), mask.float() / mask.sum(dim=1, keepdim=True)

    class ClosedButReading(Pooled):
        closed_form = True

    with pytest.raises(ValueError, match="closed_form head is fitted on one input per patient"):
        register_head("closed_reader")(ClosedButReading)
    catalog.add(catalog.HeadSpec("declared", needs_clinical=True, module=Pooled.__module__))
    with pytest.raises(ValueError, match=r"declares .*needs_clinical=False.* but the catalog lists"):
        register_head("declared")(Pooled)  # a built-in declaration the class does not live up to
    assert "closed_reader" not in list_heads()


def test_default_loss_is_cross_entropy_and_only_closed_form_heads_fit_in_closed_form():
    head = _head("mean", 0)
    logits, target, weight = torch.randn(4, C), torch.tensor([0, 1, 2, 1]), torch.tensor([1.0, 2.0, 0.5])
    expected = torch.nn.functional.cross_entropy(logits, target, weight=weight)
    torch.testing.assert_close(head.loss(logits, target, weight), expected)
    with pytest.raises(TypeError, match="epoch by epoch"):
        head.fit_closed_form(torch.zeros(4, 1, D), None, target, torch.ones(4), weight_decay=0.0)
