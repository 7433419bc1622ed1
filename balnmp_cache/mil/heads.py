"""The built-in MIL heads: the official BALNMP head, (gated) ABMIL, mean/max pooling, clinical-only.

Every head follows the :class:`~balnmp_cache.mil.base.MILHead` contract and fuses clinical data
the official way (tiled ``expand_times`` times, concatenated after pooling). All use PyTorch's
default initialisation, as the official code does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from balnmp_cache.mil.base import MILHead, make_classifier, masked_mean, masked_softmax, uniform_attention
from balnmp_cache.mil.registry import register_head

__all__ = ["ABMILHead", "BalnmpHead", "ClinicalOnlyHead", "GatedABMILHead", "MaxPoolHead", "MeanPoolHead"]


def _attention_pool(attention: Tensor, embeddings: Tensor) -> Tensor:
    """``m = aᵀH`` per bag: (B, N) weights and (B, N, L) embeddings -> (B, L)."""
    return torch.einsum("bn,bnl->bl", attention.to(embeddings.dtype), embeddings)


class AttentionAggregator(nn.Module):
    """The official ``AttentionAggregator(in, inner_feature_size=1, out_feature_size=256)``.

    ``fc1 = Sequential(Linear(D, 256), Dropout, ReLU)`` and ``attention = Sequential(Linear(256, 1),
    Dropout, Tanh, Linear(1, 1), Dropout)``; submodule names and indices match the official state
    dict (``fc1.0``, ``attention.0``, ``attention.3``).
    """

    def __init__(self, in_dim: int, *, hidden: int = 256, inner: int = 1, dropout: float = 0.5) -> None:
        super().__init__()
        self.fc1 = nn.Sequential(nn.Linear(in_dim, hidden), nn.Dropout(dropout), nn.ReLU())
        self.attention = nn.Sequential(
            nn.Linear(hidden, inner), nn.Dropout(dropout), nn.Tanh(), nn.Linear(inner, 1), nn.Dropout(dropout)
        )

    def scores(self, hidden: Tensor) -> Tensor:
        """Pre-softmax attention ``w2·tanh(w1·h + b1) + b2`` of (..., 256) embeddings -> (...)."""
        return self.attention(hidden).squeeze(-1)

    def forward(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, D) features, (B, N) mask -> pooled (B, 256), attention (B, N)."""
        hidden = self.fc1(features)  # (B, N, 256)
        attention = masked_softmax(self.scores(hidden), mask)  # (B, N), per bag
        return _attention_pool(attention, hidden), attention


@register_head("balnmp")
class BalnmpHead(MILHead):
    """The official BALNMP head (Xu et al. 2021, ``MILNetWithClinicalData`` without the backbone).

    ``H = ReLU(fc1(x))`` (N, 256); ``a = softmax_n(w2·tanh(w1·h + b1) + b2)``; ``m = aᵀH`` (256);
    with clinical data ``z = [m, c, c, ..., c]`` (256 + 10K); ``logits = Linear(64, C)(ReLU(Linear(z)))``.
    Dropout (p = ``dropout``, 0.5 officially) sits after the fc1 Linear, after the 1-unit attention
    layer and on the attention logits, exactly where the official code has it. State-dict keys equal
    the official head keys, so official weights load with ``load_state_dict``
    (see :func:`balnmp_cache.mil.load_official_head`).
    """

    def __init__(
        self, *, in_dim: int, n_classes: int, clinical_dim: int = 0, dropout: float = 0.5, expand_times: int = 10
    ) -> None:
        super().__init__(in_dim=in_dim, n_classes=n_classes, clinical_dim=clinical_dim, expand_times=expand_times)
        self.attention_aggregator = AttentionAggregator(in_dim, dropout=dropout)
        self.classifier = make_classifier(256 + self.fused_clinical_dim, 64, n_classes)

    def pool(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.attention_aggregator(features, mask)

    def patch_scores(self, features: Tensor, clinical: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        x, tiled = self._patch_inputs(features, clinical)  # (N, D), (N, K)
        hidden = self.attention_aggregator.fc1(x)  # (N, 256)
        # a one-patch bag pools to the patch's own embedding: the classifier sees ``hidden`` itself
        return self.classify(hidden, tiled), self.attention_aggregator.scores(hidden).float()


@register_head("abmil")
class ABMILHead(MILHead):
    """Attention-based deep MIL (Ilse et al. 2018, arXiv 1802.04712), with late clinical fusion.

    ``h = ReLU(Linear(D, L)(x))`` with L = ``embed_dim`` (500); ``a = softmax_n(w·tanh(V h))`` with
    V of size ``attn_dim`` x L (128 x 500); ``m = aᵀH``; then the classifier on ``[m, c, ..., c]``.
    Dropout (``dropout``) follows the embedding and the attention branch. The classifier is the
    official ``Linear(., 64)-ReLU-Linear(64, C)`` by default, so heads differ only in pooling;
    ``classifier_hidden=0`` gives Ilse's single linear layer.
    """

    gated = False

    def __init__(
        self,
        *,
        in_dim: int,
        n_classes: int,
        clinical_dim: int = 0,
        dropout: float = 0.25,
        expand_times: int = 10,
        embed_dim: int = 500,
        attn_dim: int = 128,
        classifier_hidden: int = 64,
    ) -> None:
        super().__init__(in_dim=in_dim, n_classes=n_classes, clinical_dim=clinical_dim, expand_times=expand_times)
        self.embed = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout))
        self.attention_v = nn.Sequential(nn.Linear(embed_dim, attn_dim), nn.Tanh(), nn.Dropout(dropout))
        if self.gated:
            self.attention_u = nn.Sequential(nn.Linear(embed_dim, attn_dim), nn.Sigmoid(), nn.Dropout(dropout))
        self.attention_w = nn.Linear(attn_dim, 1)
        self.classifier = make_classifier(embed_dim + self.fused_clinical_dim, classifier_hidden, n_classes)

    def _scores(self, hidden: Tensor) -> Tensor:
        """Pre-softmax attention ``w·tanh(V h)`` (gated: ``w·(tanh(V h) ⊙ sigmoid(U h))``): (..., L) -> (...)."""
        branch = self.attention_v(hidden)  # (..., attn_dim)
        if self.gated:
            branch = branch * self.attention_u(hidden)  # tanh ⊙ sigmoid
        return self.attention_w(branch).squeeze(-1)

    def pool(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.embed(features)  # (B, N, L)
        attention = masked_softmax(self._scores(hidden), mask)  # (B, N)
        return _attention_pool(attention, hidden), attention

    def patch_scores(self, features: Tensor, clinical: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        x, tiled = self._patch_inputs(features, clinical)  # (N, D), (N, K)
        hidden = self.embed(x)  # (N, L)
        return self.classify(hidden, tiled), self._scores(hidden).float()  # one-patch bags pool to ``hidden``


@register_head("gated_abmil")
class GatedABMILHead(ABMILHead):
    """Gated attention MIL (Ilse et al. 2018): ``a = softmax_n(w·(tanh(V h) ⊙ sigmoid(U h)))``.

    Same options and classifier as :class:`ABMILHead`.
    """

    gated = True


class _PoolingHead(MILHead):
    """A per-patch ``Linear(D, embed_dim) + ReLU`` embedding, a fixed pooling, then the classifier."""

    def __init__(
        self,
        *,
        in_dim: int,
        n_classes: int,
        clinical_dim: int = 0,
        dropout: float = 0.25,
        expand_times: int = 10,
        embed_dim: int = 256,
        classifier_hidden: int = 64,
    ) -> None:
        super().__init__(in_dim=in_dim, n_classes=n_classes, clinical_dim=clinical_dim, expand_times=expand_times)
        self.embed = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout))
        self.classifier = make_classifier(embed_dim + self.fused_clinical_dim, classifier_hidden, n_classes)


@register_head("mean")
class MeanPoolHead(_PoolingHead):
    """Mean pooling baseline: the mean embedding over real patches; attention is uniform (1 / n_real)."""

    def pool(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.embed(features)  # (B, N, L)
        return masked_mean(hidden, mask), uniform_attention(mask)


@register_head("max")
class MaxPoolHead(_PoolingHead):
    """Max pooling baseline: the element-wise maximum embedding over real patches.

    Its attention is the share of the ``embed_dim`` pooled dimensions each patch wins (the number of
    dimensions where it holds the maximum, divided by ``embed_dim``), so it sums to 1 over the real
    patches and is 0 on padding; ties go to one of the tied patches. A bag with no real patch pools
    to zeros.
    """

    def pool(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.embed(features)  # (B, N, L)
        filled = hidden.masked_fill(~mask.unsqueeze(-1), torch.finfo(hidden.dtype).min)
        pooled, winner = filled.max(dim=1)  # (B, L) values and patch indices
        nonempty = mask.any(dim=1, keepdim=True)  # (B, 1)
        pooled = torch.where(nonempty, pooled, torch.zeros_like(pooled))
        wins = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        wins.scatter_add_(1, winner, torch.ones(winner.shape, dtype=torch.float32, device=mask.device))
        return pooled, wins / hidden.shape[-1] * mask  # (B, N)


@register_head("clinical_only")
class ClinicalOnlyHead(MILHead):
    """Logistic regression on the clinical vector (the paper's clinical baseline): ``Linear(K, C)``.

    Features are ignored (only their shape is checked) and the attention is uniform over the real
    patches. ``dropout`` and ``expand_times`` are accepted so every head takes the same options,
    and have no effect: there is no hidden layer, and tiling the input of a single linear layer
    adds no capacity. Needs ``clinical_dim > 0``.

    Every bag of a patient has the same input for this head, so the bag-level loss of an epoch is
    the patient-level loss weighted by the patient's bag count: :meth:`fit_closed_form` minimises
    that directly to convergence with L-BFGS, the loss the bag-level trainer would minimise
    without thousands of tiny steps.
    """

    uses_features = False
    needs_clinical = True
    closed_form = True

    def __init__(
        self, *, in_dim: int, n_classes: int, clinical_dim: int = 0, dropout: float = 0.25, expand_times: int = 10
    ) -> None:
        super().__init__(in_dim=in_dim, n_classes=n_classes, clinical_dim=clinical_dim, expand_times=expand_times)
        del dropout  # accepted for a uniform option set; unused (see the class docstring)
        self.classifier = nn.Linear(clinical_dim, n_classes)

    def pool(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return features.new_zeros(features.shape[0], 0), uniform_attention(mask)

    def classify(self, pooled: Tensor, clinical: Tensor | None) -> Tensor:
        return self.classifier(clinical)

    def fit_closed_form(
        self, features: Tensor, clinical: Tensor | None, target: Tensor, sample_weight: Tensor, *, weight_decay: float
    ) -> float:
        """Weighted, L2-penalised logistic regression fitted with L-BFGS (see :meth:`MILHead.fit_closed_form`)."""
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                                      history_size=20, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            logits, _ = self(features, None, clinical)
            per_bag = F.cross_entropy(logits.float(), target, reduction="none")  # (B,)
            loss = (per_bag * sample_weight).sum() / sample_weight.sum()
            loss = loss + 0.5 * weight_decay * sum(p.pow(2).sum() for p in params)
            loss.backward()
            return loss

        optimizer.step(closure)
        return float(closure().detach())  # step() returns the loss before optimisation
