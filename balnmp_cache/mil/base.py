"""The one contract every MIL head follows, and the masked pooling pieces the heads share.

A head maps a batch of padded bags of cached patch features (plus, optionally, one clinical
vector per bag) to class logits and one attention weight per patch. Bags are padded to the
longest bag of the batch; ``mask`` says which positions hold real patches.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from balnmp_cache.errors import ConfigError

__all__ = ["MILHead", "make_classifier", "masked_mean", "masked_softmax", "tile_clinical", "uniform_attention"]


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the patches of each bag, with padded positions excluded.

    Padded positions are filled with the most negative finite value (never ``-inf``, whose
    arithmetic can give NaN) and the result is multiplied by the mask, so padded weights are
    exactly 0 and a bag with a single real patch gets weight 1.0. A bag with no real patch gets
    all-zero weights instead of NaN. The softmax runs in float32 even under autocast.

    Args:
        scores: (B, N) attention logits.
        mask: (B, N) bool, True = real patch.

    Returns:
        (B, N) float32 weights; each row sums to 1 over its real patches.
    """
    scores = scores.float()
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=1) * mask  # (B, N)


def uniform_attention(mask: Tensor) -> Tensor:
    """(B, N) float32 weights, 1 / n_real on the real patches of each bag and 0 on padding."""
    weights = mask.float()
    return weights / weights.sum(dim=1, keepdim=True).clamp_min(1.0)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of (B, N, L) ``values`` over the real patches of each bag -> (B, L); 0 for an empty bag."""
    weights = uniform_attention(mask).to(values.dtype)
    return torch.einsum("bn,bnl->bl", weights, values)


def tile_clinical(clinical: Tensor, expand_times: int) -> Tensor:
    """Tile (B, K) clinical vectors block-wise: ``[c, c, ..., c]`` -> (B, K * expand_times).

    This is the official ``clinical_data.repeat(1, expand_times)`` (block repetition, not
    interleaving); its only purpose is to give the K clinical values a larger share of the
    classifier's input next to the pooled image embedding.
    """
    return clinical.repeat(1, expand_times)


def _one_per_patch(clinical: Tensor | None, n_patches: int) -> Tensor | None:
    """A (K,) clinical vector repeated for N single-patch bags -> (N, K); ``None`` stays ``None``."""
    return None if clinical is None else clinical.reshape(1, -1).expand(n_patches, -1)


def make_classifier(in_features: int, hidden: int, n_classes: int) -> nn.Module:
    """The classifier after pooling and fusion.

    ``hidden > 0`` gives the official ``Sequential(Linear(in, hidden), ReLU(), Linear(hidden, C))``
    (indices 0 and 2 hold the weights, as in the official checkpoints); ``hidden == 0`` gives a
    single ``Linear(in, C)``, as in Ilse et al.
    """
    if hidden == 0:
        return nn.Linear(in_features, n_classes)
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


class MILHead(nn.Module, abc.ABC):
    """Base class of all MIL heads: one contract for the trainer, the predictor and the tests.

    Contract::

        head(features, mask=None, clinical=None) -> (logits, attention)

        features   (B, N, D) float32   B bags padded to N patches of D-dim cached features;
                                       float16 input is cast to the head's parameter dtype.
        mask       (B, N) bool          True = real patch, False = padding; None = all real.
        clinical   (B, K) float32      one clinical vector per bag; required when
                                       clinical_dim > 0 and refused when clinical_dim == 0.
        logits     (B, C)              unnormalised class scores (use softmax / cross-entropy).
        attention  (B, N) float32      weights over each bag's patches: they sum to 1 over the
                                       real patches and are exactly 0 on padded ones. Padded
                                       positions never influence logits.

    A bag with a single real patch gets attention 1.0 on it. Bags are independent: the result
    for one bag never depends on the other bags of the batch or on its padding (in eval mode).

    With clinical data, every head fuses late: the pooled image embedding is concatenated with
    the clinical vector tiled block-wise ``expand_times`` times (``clinical.repeat(1, 10)``,
    as the official code does) before the classifier.

    Subclasses implement :meth:`pool` and set ``self.classifier``; build them through
    :func:`balnmp_cache.mil.create_head` so options are validated.

    A head declares what it needs with three class attributes, which the trainer, the grid
    expansion and the checks read (nothing outside ``mil/`` looks at a head's name):

    - ``uses_features`` (default ``True``): it reads the patch features. ``False``: the trainer
      feeds it a zero-cost stand-in, and a grid runs it once, on its first cache.
    - ``needs_clinical`` (default ``False``): it needs a clinical vector (``clinical_dim > 0``).
    - ``closed_form`` (default ``False``): it is fitted once to convergence by
      :meth:`fit_closed_form` instead of epoch by epoch (needs ``uses_features = False``).

    :meth:`loss` is the training loss (cross-entropy by default); override it for a head with a
    loss of its own.

    Attributes:
        name: the registry name (set by ``register_head``).
        in_dim: D, the feature dimension the head accepts.
        n_classes: C, the number of logits.
        clinical_dim: K, the clinical vector length; 0 = image-only.
        expand_times: how many times the clinical vector is tiled before fusion.
    """

    name: ClassVar[str] = ""
    uses_features: ClassVar[bool] = True
    needs_clinical: ClassVar[bool] = False
    closed_form: ClassVar[bool] = False
    classifier: nn.Module  # (B, P + fused_clinical_dim) -> (B, C); set by each subclass

    def __init__(self, *, in_dim: int, n_classes: int, clinical_dim: int = 0, expand_times: int = 10) -> None:
        if self.needs_clinical and clinical_dim <= 0:
            from balnmp_cache.mil.catalog import head_specs

            readers = ", ".join(spec.name for spec in head_specs() if spec.uses_features)
            raise ConfigError(
                f"MIL head {self.name!r} needs clinical data, but clinical_dim={clinical_dim}; turn clinical inputs "
                f"on (`clinical = true` in the train configuration, or --clinical) or choose a head that reads the "
                f"features ({readers})"
            )
        super().__init__()
        self.in_dim = int(in_dim)
        self.n_classes = int(n_classes)
        self.clinical_dim = int(clinical_dim)
        self.expand_times = int(expand_times)

    @property
    def fused_clinical_dim(self) -> int:
        """Width of the tiled clinical block the classifier sees (0 when image-only)."""
        return self.clinical_dim * self.expand_times

    @abc.abstractmethod
    def pool(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Pool each bag into one embedding.

        Args:
            features: (B, N, D) features in the parameter dtype.
            mask: (B, N) bool, True = real patch.

        Returns:
            pooled (B, P) and attention (B, N) float32 (sums to 1 over real patches, 0 on padding).
        """

    def classify(self, pooled: Tensor, clinical: Tensor | None) -> Tensor:
        """Fuse (B, P) ``pooled`` with the tiled (B, K) clinical vectors and return (B, C) logits."""
        if self.clinical_dim > 0 and clinical is not None:
            tiled = tile_clinical(clinical, self.expand_times).to(pooled.dtype)  # (B, K * expand_times)
            pooled = torch.cat([pooled, tiled], dim=-1)  # (B, P + K * expand_times)
        return self.classifier(pooled)

    def forward(
        self, features: Tensor, mask: Tensor | None = None, clinical: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Apply the head; see the class docstring for shapes.

        Raises:
            ValueError: a tensor has the wrong shape or dtype, or ``clinical`` is missing or unexpected.
        """
        features, mask, clinical = self._check_inputs(features, mask, clinical)
        pooled, attention = self.pool(features, mask)
        return self.classify(pooled, clinical), attention

    def patch_scores(self, features: Tensor, clinical: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Score every patch on its own, in one pass: what heatmaps draw (call in eval mode).

        Both outputs are functions of one patch (and the slide's clinical vector) alone, never of the
        other patches of a bag, so they can be computed in chunks and compared across bags and slides.

        Args:
            features: (N, D) features of N patches (cast to the parameter dtype).
            clinical: (K,) the slide's clinical vector; required exactly when ``clinical_dim > 0``.

        Returns:
            ``logits`` (N, C): the logits of each patch as a bag of that one patch (its attention is then 1,
            so the pooled embedding is the patch's own); ``attention_logits`` (N,): the pre-softmax attention
            score of each patch, or ``None`` for heads whose weights are not a softmax of per-patch scores
            (this default; attention heads override it and compute both from one embedding).
        """
        # N bags of one patch: (N, 1, D) -> (N, C)
        logits, _ = self(features.unsqueeze(1), None, _one_per_patch(clinical, features.shape[0]))
        return logits, None

    def _patch_inputs(self, features: Tensor, clinical: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """(N, D) features and (K,) clinical checked as N single-patch bags -> (N, D) and (N, K) or None."""
        bags, _, tiled = self._check_inputs(features.unsqueeze(1), None, _one_per_patch(clinical, features.shape[0]))
        return bags.squeeze(1), tiled

    def loss(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """The training loss of a batch: cross-entropy unless a head brings its own.

        Args:
            logits: (B, C) logits of the batch (any float dtype; computed in float32).
            target: (B,) int64 class labels.
            weight: (C,) class weights, or ``None``.

        Returns:
            A scalar: the mean loss over the batch (weighted like ``F.cross_entropy``).
        """
        return F.cross_entropy(logits.float(), target, weight=weight)

    def fit_closed_form(
        self, features: Tensor, clinical: Tensor | None, target: Tensor, sample_weight: Tensor, *, weight_decay: float
    ) -> float:
        """Fit the head to convergence on one input per training patient (heads with ``closed_form``).

        Args:
            features: (S, 1, D) a zero-cost stand-in (closed-form heads do not read features).
            clinical: (S, K) each training patient's clinical vector.
            target: (S,) int64 labels.
            sample_weight: (S,) each patient's weight (its number of training bags times its class weight).
            weight_decay: the L2 penalty, ``0.5 * weight_decay * sum(p ** 2)``.

        Returns:
            The final training loss.

        Raises:
            TypeError: the head is trained epoch by epoch (``closed_form`` is ``False``).
        """
        raise TypeError(
            f"MIL head {self.name!r} is trained epoch by epoch (closed_form = False); it has no closed-form fit"
        )

    def _check_inputs(
        self, features: Tensor, mask: Tensor | None, clinical: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        if features.dim() != 3 or features.shape[-1] != self.in_dim:
            raise ValueError(
                f"{self.name or type(self).__name__} head expects features of shape (B, N, {self.in_dim}); "
                f"got {tuple(features.shape)}"
            )
        batch, n_patches = features.shape[:2]
        param = next(self.parameters(), None)
        if param is not None and features.is_floating_point() and features.dtype != param.dtype:
            features = features.to(param.dtype)
        if mask is None:
            mask = torch.ones(batch, n_patches, dtype=torch.bool, device=features.device)
        elif mask.shape != (batch, n_patches) or mask.dtype != torch.bool:
            raise ValueError(
                f"mask must be a bool tensor of shape ({batch}, {n_patches}); "
                f"got {mask.dtype} of shape {tuple(mask.shape)}"
            )
        else:
            # Zero the padding so that whatever it holds (even NaN or inf) cannot reach the logits.
            features = features.masked_fill(~mask.unsqueeze(-1), 0.0)
        if self.clinical_dim > 0:
            if clinical is None or clinical.shape != (batch, self.clinical_dim):
                got = "None" if clinical is None else str(tuple(clinical.shape))
                raise ValueError(
                    f"this head was built with clinical_dim={self.clinical_dim} and needs clinical of shape "
                    f"({batch}, {self.clinical_dim}); got {got}"
                )
            if param is not None:
                clinical = clinical.to(param.dtype)
        elif clinical is not None:
            raise ValueError("this head is image-only (clinical_dim=0) but clinical data was passed")
        return features, mask, clinical

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, n_classes={self.n_classes}, clinical_dim={self.clinical_dim}, "
            f"expand_times={self.expand_times}"
        )
