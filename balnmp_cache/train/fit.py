"""Fitting one model: epochs of bag batches, validation, selection and early stopping.

Per epoch: the training bags of the epoch (:class:`~balnmp_cache.train.bags.EpochBags`) in batches of
B bags, one optimizer step per batch with the head's own :meth:`~balnmp_cache.mil.MILHead.loss`; the
learning rate follows cosine annealing with warm restarts, stepped after each epoch; the model is
evaluated on the validation patients' fixed evaluation bags and selected on patient-level
validation AUC, ties broken by the lower validation loss (the loss alone when the AUC is
undefined). Test patients are never looked at. Training stops after ``patience`` epochs without
improvement. A head with ``closed_form`` is instead fitted once by its own ``fit_closed_form``.

Random streams: the head arrives initialised; dropout draws from the global generator seeded with
``seed + DROPOUT_STREAM`` inside :func:`torch.random.fork_rng`, so the caller's random state is
left as it was and a seed gives the same model on a given machine.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from balnmp_cache.mil.base import MILHead
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.train.bags import BagSet, EpochBags
from balnmp_cache.train.engine import FeatureSource, autocast, batch_inputs, evaluate, fast_dropout
from balnmp_cache.train.metrics import merge_bags, patient_auc

if TYPE_CHECKING:
    from balnmp_cache.train.config import TrainConfig

__all__ = ["DROPOUT_STREAM", "FitData", "FitSettings", "Fitted", "fit"]

log = logging.getLogger(__name__)

DROPOUT_STREAM = 0x5EED
"""Offset of the dropout stream's seed from the training seed (which also initialises the head)."""


@dataclass(frozen=True)
class FitSettings:
    """How a model is optimised and selected: the :class:`TrainConfig` fields of the same names.

    There are no defaults here; :meth:`from_config` copies them from a ``TrainConfig``, where they live.
    """

    optimizer: Literal["adam", "sgd"]
    lr: float
    weight_decay: float
    momentum: float
    t0: int
    t_mult: int
    class_weights: bool
    merge: Literal["mean", "max"]
    epochs: int
    patience: int
    seed: int

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> FitSettings:
        """The settings of ``cfg``."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


@dataclass(frozen=True)
class FitData:
    """What one model is fitted on.

    Attributes:
        labels: (P,) int64 labels of every patient.
        train: (S_train,) training patient indices.
        val: (S_val,) validation patient indices.
        train_bags: the training bags of every epoch.
        val_bags: the validation patients' fixed evaluation bags.
        clinical: (P, K) float32 clinical vectors, or ``None`` (image-only).
        n_classes: C.
    """

    labels: np.ndarray
    train: np.ndarray
    val: np.ndarray
    train_bags: EpochBags
    val_bags: BagSet
    clinical: np.ndarray | None
    n_classes: int


@dataclass
class Fitted:
    """A trained model: the head holds the selected epoch's weights and is in eval mode."""

    head: MILHead
    best_epoch: int
    epochs_run: int
    best_val_auc: float | None
    curves: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def fit(
    head: MILHead,
    settings: FitSettings,
    data: FitData,
    source: FeatureSource,
    *,
    progress: ProgressCallback | None = None,
) -> Fitted:
    """Train ``head`` on ``data`` (features from ``source``) and keep its best validation epoch.

    Args:
        head: an initialised head (moved to ``source.device``).
        settings: optimizer, schedule, selection and seed.
        data: labels, splits, bags and clinical vectors.
        source: the features, on the device training runs on.
        progress: receives ``epochs`` events; each epoch's ``info`` holds its training ``loss`` and ``val AUC``,
            the ``best`` validation AUC so far with its epoch, and ``s/epoch``.
    """
    device = source.device
    emit(progress, "start", "epochs", total=settings.epochs)
    swap = fast_dropout(head) if device.type == "cpu" else contextlib.nullcontext()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), swap:
        torch.manual_seed(settings.seed + DROPOUT_STREAM)  # dropout's own stream, not the initialisation's
        trainer = _Trainer(head.to(device), settings, data, source)
        if head.closed_form:
            trainer.fit_closed_form()
        else:
            trainer.fit_epochs(progress)
    emit(progress, "end", "epochs")
    return trainer.result()


class _Trainer:
    """The state of one fit: the best epoch so far and the curves."""

    def __init__(self, head: MILHead, settings: FitSettings, data: FitData, source: FeatureSource) -> None:
        self.head, self.settings, self.data, self.source = head, settings, data, source
        device = source.device
        self.clinical = None if data.clinical is None else torch.from_numpy(
            np.ascontiguousarray(data.clinical, dtype=np.float32)).to(device)  # (P, K)
        self.weights = None
        if settings.class_weights:
            counts = np.bincount(data.labels[data.train], minlength=data.n_classes).astype(np.float64)
            self.weights = torch.tensor(counts.sum() / (data.n_classes * np.maximum(counts, 1.0)), dtype=torch.float32,
                                        device=device)  # (C,) inverse class frequency
        self.best_score: tuple[float, float] = (-np.inf, -np.inf)
        self.best_auc: float | None = None
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.epochs_run = 0
        self.curves: list[dict[str, Any]] = []
        self.start = time.perf_counter()

    def fit_epochs(self, progress: ProgressCallback | None) -> None:
        """Epochs of mini-batch training with validation, selection and early stopping."""
        optimizer = _optimizer(self.head, self.settings, self.source.device)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=self.settings.t0,
                                                                         T_mult=self.settings.t_mult)
        for epoch in range(1, self.settings.epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            tic = time.perf_counter()
            train_loss, train_auc = self._train_epoch(epoch, optimizer)
            probs, _ = evaluate(self.head, self.clinical, self.data.val_bags, self.source)
            scheduler.step()
            auc, loss = self._val_score(probs)
            # validation AUC first; on a tie (small validation sets saturate) the lower validation loss
            score = (auc if auc is not None else -np.inf, -loss)
            improved = score > self.best_score
            if improved:
                self.best_score, self.best_auc, self.best_epoch = score, auc, epoch
                self.best_state = _snapshot(self.head, self.best_state)
            self.epochs_run = epoch
            self._curve(epoch, lr, train_loss, train_auc, loss, auc, int(improved))
            log.debug("epoch %d: loss %.4f, train AUC %s, val AUC %s (best %s @ %d)", epoch, train_loss,
                      _fmt(train_auc), _fmt(auc), _fmt(self.best_auc), self.best_epoch)
            emit(progress, "advance", "epochs", steps=1, info={  # this epoch's figures, then the best so far
                "loss": round(train_loss, 4), "val AUC": _fmt(auc),
                "best": f"{_fmt(self.best_auc)} @ {self.best_epoch}", "s/epoch": round(time.perf_counter() - tic, 2)})
            if epoch - self.best_epoch >= self.settings.patience:
                log.info("early stop after epoch %d (best validation epoch %d)", epoch, self.best_epoch)
                break

    def _train_epoch(self, epoch: int, optimizer: torch.optim.Optimizer) -> tuple[float, float | None]:
        """One pass over the epoch's training bags -> (mean bag loss, patient AUC of the training bags)."""
        data, device = self.data, self.source.device
        bags = data.train_bags.draw(epoch)
        probs = np.zeros((len(bags), data.n_classes), dtype=np.float32)  # (B_epoch, C), dropout on
        seen = np.zeros(len(bags), dtype=np.int64)
        total, start = 0.0, 0
        self.head.train()
        for batch in data.train_bags.batches(bags, epoch):
            stop = start + len(batch)
            y = torch.from_numpy(data.labels[batch.patient]).to(device)
            x, mask, clinical = batch_inputs(self.source, self.head, self.clinical, batch)
            with autocast(self.source):
                logits, _ = self.head(x, mask, clinical)
            loss = self.head.loss(logits, y, self.weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
            probs[start:stop] = torch.softmax(logits.detach().float(), dim=1).cpu().numpy()
            seen[start:stop] = batch.patient
            start = stop
        merged, _ = merge_bags(probs, seen, len(data.labels), how=self.settings.merge)
        return total / max(len(bags), 1), patient_auc(data.labels[data.train], merged[data.train])

    def fit_closed_form(self) -> None:
        """One fit of the head on one input per training patient, weighted by its training bags."""
        data, device = self.data, self.source.device
        train = data.train
        n_bags = data.train_bags.draw(1).bags_per_patient(len(data.labels))[train]  # (S,)
        y = torch.from_numpy(data.labels[train]).to(device)
        weight = torch.from_numpy(n_bags.astype(np.float32)).to(device)
        if self.weights is not None:
            weight = weight * self.weights[y]
        clinical = None if self.clinical is None else self.clinical[torch.from_numpy(train).to(device)]  # (S, K)
        x, _ = self.source.placeholder(np.zeros((len(train), 1), dtype=np.int64))  # (S, 1, D)
        loss = self.head.train().fit_closed_form(x, clinical, y, weight, weight_decay=self.settings.weight_decay)
        probs, _ = evaluate(self.head, self.clinical, data.val_bags, self.source)
        auc, val_loss = self._val_score(probs)
        self.best_auc, self.best_epoch, self.epochs_run = auc, 1, 1
        self.best_state = _snapshot(self.head, None)
        self._curve(1, None, loss, None, val_loss, auc, 1)

    def _val_score(self, probs: np.ndarray) -> tuple[float | None, float]:
        """(B_val, C) bag probabilities -> patient-level validation AUC and bag-level cross-entropy."""
        labels, bags = self.data.labels, self.data.val_bags
        patient_probs, _ = merge_bags(probs, bags.patient, len(labels), how=self.settings.merge)
        auc = patient_auc(labels[self.data.val], patient_probs[self.data.val])
        picked = probs[np.arange(len(bags)), labels[bags.patient]]
        loss = float(-np.log(np.clip(picked, 1e-12, None)).mean()) if len(picked) else float("nan")
        return auc, loss

    def _curve(self, epoch: int, lr: float | None, train_loss: float, train_auc: float | None, val_loss: float,
               val_auc: float | None, best: int) -> None:
        self.curves.append({"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_auc": train_auc,
                            "val_loss": val_loss, "val_auc": val_auc, "best": best,
                            "seconds": round(time.perf_counter() - self.start, 4)})

    def result(self) -> Fitted:
        """The head with the best epoch's weights, in eval mode."""
        if self.best_state is not None:
            self.head.load_state_dict(self.best_state)
        self.head.eval()
        return Fitted(self.head, self.best_epoch, self.epochs_run, self.best_auc, self.curves,
                      time.perf_counter() - self.start)


def _optimizer(head: MILHead, settings: FitSettings, device: torch.device) -> torch.optim.Optimizer:
    # One fused kernel per parameter instead of about ten small ops: an eighth of a 512-d step on the CPU.
    fused = True if device.type in ("cpu", "cuda") else None  # None: torch's default elsewhere
    if settings.optimizer == "adam":
        return torch.optim.Adam(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, fused=fused)
    return torch.optim.SGD(head.parameters(), lr=settings.lr, momentum=settings.momentum,
                           weight_decay=settings.weight_decay, fused=fused)


def _snapshot(head: torch.nn.Module, into: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """A CPU copy of ``head``'s state, written into the buffers of ``into`` when there are any."""
    state = head.state_dict()
    if into is None:
        return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
    for key, value in state.items():
        into[key].copy_(value.detach())
    return into


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
