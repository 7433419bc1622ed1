"""The training loop: several models trained at once on shared batches, each with its own state.

Models that share the data and the bag sequence — same cache, task, splits, N, M, B and seed —
are trained in one loop: every batch of bags is gathered once (``(B, N, D)`` from the in-memory
features, converted to float32 per batch) and fed to each model in turn. Each model keeps its own
optimizer, scheduler, early-stopping state and random-number stream (dropout), so a model trained
in a group gives exactly the predictions it gives when trained alone.

Per epoch: bags drawn anew with a generator of (seed, epoch); one optimizer step per batch of
``B`` bags; the learning rate follows cosine annealing with warm restarts, stepped after each
epoch; the model is evaluated on the validation patients' fixed evaluation bags and selected on
patient-level validation AUC, ties broken by the lower validation loss (the loss alone when
the AUC is undefined). Test patients are never
looked at during training. Training stops after ``patience`` epochs without improvement.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from balnmp_cache.mil import MILHead
from balnmp_cache.progress import ProgressCallback, emit
from balnmp_cache.train.bags import BagSet, PatientRows, epoch_rng, iter_batches, sample_bags
from balnmp_cache.train.engine import (
    FeatureSource,
    RngSlot,
    autocast,
    batch_inputs,
    evaluate,
    fast_dropout,
    resolve_device,
    torch_threads,
)
from balnmp_cache.train.metrics import merge_bags, patient_auc

__all__ = [
    "FeatureSource",
    "Fitted",
    "ModelPlan",
    "SharedPlan",
    "evaluate",
    "fit_models",
    "resolve_device",
    "torch_threads",
]

log = logging.getLogger(__name__)

DROPOUT_STREAM = 0x5EED
"""Offset of a model's dropout seed from its initialisation seed."""


@dataclass
class SharedPlan:
    """What the models of one group share: data, bags and batches."""

    rows: PatientRows
    labels: np.ndarray  # (P,) int64
    train: np.ndarray  # (S_train,) patient indices
    val: np.ndarray  # (S_val,) patient indices
    eval_bags: BagSet  # fixed evaluation bags of every patient
    bag_size: int
    bags_per_patient: int | None
    official_train: BagSet | None  # fixed training bags (official replay) or None (random)
    batch_bags: int
    seed: int
    n_classes: int

    def train_bags(self, epoch: int) -> BagSet:
        if self.official_train is not None:
            return self.official_train
        return sample_bags(
            self.rows, self.train, bag_size=self.bag_size, bags_per_patient=self.bags_per_patient,
            rng=epoch_rng(self.seed, epoch, 0),
        )


@dataclass
class ModelPlan:
    """One model of a group and how to train it."""

    name: str
    head: MILHead
    clinical: np.ndarray | None  # (P, K) float32, or None for image-only
    seed: int
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 1e-3
    momentum: float = 0.3
    t0: int = 20
    t_mult: int = 2
    class_weights: bool = False
    merge: Literal["mean", "max"] = "mean"
    epochs: int = 60
    patience: int = 15


@dataclass
class Fitted:
    """A trained model: the head holds the selected epoch's weights and is in eval mode."""

    head: MILHead
    best_epoch: int
    epochs_run: int
    best_val_auc: float | None
    curves: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _State:
    plan: ModelPlan
    slot: RngSlot
    optimizer: torch.optim.Optimizer
    scheduler: Any
    clinical: torch.Tensor | None
    weights: torch.Tensor | None
    best_score: tuple[float, float] = (-np.inf, -np.inf)
    best_auc: float | None = None
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    epochs_run: int = 0
    active: bool = True
    curves: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0



def _make_state(plan: ModelPlan, shared: SharedPlan, device: torch.device) -> _State:
    head = plan.head.to(device)
    # One fused kernel per parameter instead of about ten small ops: an eighth of a 512-d step on the CPU.
    fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
    if plan.optimizer == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(head.parameters(), lr=plan.lr, weight_decay=plan.weight_decay, **fused)
    else:
        optimizer = torch.optim.SGD(head.parameters(), lr=plan.lr, momentum=plan.momentum, weight_decay=plan.weight_decay, **fused)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(optimizer, T_0=plan.t0, T_mult=plan.t_mult)
    weights = None
    if plan.class_weights:
        counts = np.bincount(shared.labels[shared.train], minlength=shared.n_classes).astype(np.float64)
        weights = torch.tensor(counts.sum() / (shared.n_classes * np.maximum(counts, 1.0)), dtype=torch.float32, device=device)
    clinical = torch.from_numpy(np.ascontiguousarray(plan.clinical, dtype=np.float32)).to(device) if plan.clinical is not None else None
    # Dropout draws from a stream of its own, distinct from the initialisation stream (seed).
    return _State(plan, RngSlot(plan.seed + DROPOUT_STREAM, device), optimizer, scheduler, clinical, weights)


def _val_score(st: _State, probs: np.ndarray, shared: SharedPlan, val_bags: BagSet) -> tuple[float | None, float]:
    patient_probs, _ = merge_bags(probs, val_bags.patient, len(shared.labels), how=st.plan.merge)
    auc = patient_auc(shared.labels[shared.val], patient_probs[shared.val])
    picked = probs[np.arange(len(val_bags)), shared.labels[val_bags.patient]]
    loss = float(-np.log(np.clip(picked, 1e-12, None)).mean()) if len(picked) else float("nan")
    return auc, loss


def _train_epoch(states: list[_State], shared: SharedPlan, source: FeatureSource, epoch: int) -> dict[int, tuple[float, float | None]]:
    bags = shared.train_bags(epoch)
    active = [st for st in states if st.active]
    losses = {id(st): 0.0 for st in active}
    probs = {id(st): np.zeros((len(bags), shared.n_classes), dtype=np.float32) for st in active}
    seen = np.zeros(len(bags), dtype=np.int64)
    start = 0
    for st in active:
        st.plan.head.train()
    for batch in iter_batches(bags, shared.batch_bags, rng=epoch_rng(shared.seed, epoch, 1)):
        stop = start + len(batch)
        y = torch.from_numpy(shared.labels[batch.patient]).to(source.device)
        gathered: dict[str, Any] = {}
        for st in active:
            tic = time.perf_counter()
            x, mask, clinical = batch_inputs(source, st.plan.head, st.clinical, batch, gathered)
            with st.slot.active():
                with autocast(source):
                    logits, _ = st.plan.head(x, mask, clinical)
                loss = F.cross_entropy(logits.float(), y, weight=st.weights)
                st.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                st.optimizer.step()
            losses[id(st)] += float(loss.detach()) * len(batch)
            probs[id(st)][start:stop] = torch.softmax(logits.detach().float(), dim=1).cpu().numpy()
            st.seconds += time.perf_counter() - tic
        seen[start:stop] = batch.patient
        start = stop
    result = {}
    for st in active:
        merged, _ = merge_bags(probs[id(st)], seen, len(shared.labels), how=st.plan.merge)
        auc = patient_auc(shared.labels[shared.train], merged[shared.train])
        result[id(st)] = (losses[id(st)] / max(len(bags), 1), auc)
    return result


def _snapshot(head: torch.nn.Module, into: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """A CPU copy of ``head``'s state, written into the buffers of ``into`` when there are any."""
    state = head.state_dict()
    if into is None:
        return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
    for key, value in state.items():
        into[key].copy_(value.detach())
    return into


def _fit_clinical_only(st: _State, shared: SharedPlan, source: FeatureSource, val_bags: BagSet) -> None:
    """Fit a clinical-only head to convergence: L-BFGS on the training patients' clinical vectors.

    A clinical-only model is a logistic regression: every bag of a patient has the same input, so the
    bag-level loss of an epoch is the patient-level loss weighted by the patient's bag count, which is
    minimised here directly (L2 penalty = ``weight_decay``, class weights as configured). The
    optimizer, learning-rate and epoch settings do not apply; ``curves.csv`` gets one row.
    """
    tic = time.perf_counter()
    train = shared.train
    bags = shared.train_bags(1).bags_per_patient(len(shared.labels))[train]
    y = torch.from_numpy(shared.labels[train]).to(source.device)
    weight = torch.from_numpy(bags.astype(np.float32)).to(source.device)
    if st.weights is not None:
        weight = weight * st.weights[y]
    clinical = st.clinical[torch.from_numpy(train).to(source.device)]  # type: ignore[index]
    head = st.plan.head.train()
    x, _ = source.placeholder(np.zeros((len(train), 1), dtype=np.int64))
    params = [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=500, tolerance_grad=1e-9, tolerance_change=1e-12,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits, _ = head(x, None, clinical)
        loss = (F.cross_entropy(logits.float(), y, reduction="none") * weight).sum() / weight.sum()
        loss = loss + 0.5 * st.plan.weight_decay * sum(p.pow(2).sum() for p in params)
        loss.backward()
        return loss

    optimizer.step(closure)
    loss = float(closure().detach())  # step() returns the loss before optimisation
    [(probs, _)] = evaluate([head], [st.clinical], val_bags, source)
    auc, val_loss = _val_score(st, probs, shared, val_bags)
    st.best_auc, st.best_epoch, st.epochs_run, st.active = auc, 1, 1, False
    st.best_state = _snapshot(head, st.best_state)
    st.seconds += time.perf_counter() - tic
    st.curves.append({"epoch": 1, "lr": None, "train_loss": loss, "train_auc": None, "val_loss": val_loss,
                      "val_auc": auc, "best": 1, "seconds": round(st.seconds, 4)})


def fit_models(
    plans: Sequence[ModelPlan],
    shared: SharedPlan,
    source: FeatureSource,
    *,
    progress: ProgressCallback | None = None,
) -> list[Fitted]:
    """Train ``plans`` together on the batches of ``shared``; returns them in the same order.

    Each head keeps the weights of its best validation epoch and is left in eval mode.
    """
    device = source.device
    val_bags = shared.eval_bags.select(shared.val)
    max_epochs = max(p.epochs for p in plans)
    emit(progress, "start", "epochs", total=max_epochs)
    swap = fast_dropout([p.head for p in plans]) if device.type == "cpu" else contextlib.nullcontext()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), swap:
        states = [_make_state(p, shared, device) for p in plans]
        for st in states:
            if st.plan.head.name == "clinical_only":
                _fit_clinical_only(st, shared, source, val_bags)
        for epoch in range(1, max_epochs + 1):
            for st in states:
                if st.active and epoch > st.plan.epochs:
                    st.active = False
            if not any(st.active for st in states):
                break
            lrs = {id(st): st.optimizer.param_groups[0]["lr"] for st in states if st.active}
            tic = time.perf_counter()
            train = _train_epoch(states, shared, source, epoch)
            active = [st for st in states if st.active]
            tic_eval = time.perf_counter()
            results = evaluate([st.plan.head for st in active], [st.clinical for st in active], val_bags, source)
            share_eval = (time.perf_counter() - tic_eval) / max(len(active), 1)
            for st, (probs, _) in zip(active, results, strict=True):
                st.seconds += share_eval
                st.scheduler.step()
                auc, loss = _val_score(st, probs, shared, val_bags)
                # validation AUC first; on a tie (small validation sets saturate) the lower validation loss
                score = (auc if auc is not None else -np.inf, -loss)
                improved = score > st.best_score
                if improved:
                    st.best_score, st.best_auc, st.best_epoch = score, auc, epoch
                    st.best_state = _snapshot(st.plan.head, st.best_state)
                st.epochs_run = epoch
                train_loss, train_auc = train[id(st)]
                st.curves.append({
                    "epoch": epoch, "lr": lrs[id(st)], "train_loss": train_loss, "train_auc": train_auc,
                    "val_loss": loss, "val_auc": auc, "best": int(improved), "seconds": round(st.seconds, 4),
                })
                log.debug("%s epoch %d: loss %.4f, train AUC %s, val AUC %s (best %s @ %d)", st.plan.name, epoch,
                          train_loss, _fmt(train_auc), _fmt(auc), _fmt(st.best_auc), st.best_epoch)
                if epoch - st.best_epoch >= st.plan.patience:
                    st.active = False
                    log.info("%s: early stop after epoch %d (best validation epoch %d)", st.plan.name, epoch, st.best_epoch)
            best = max((st.best_auc for st in states if st.best_auc is not None), default=None)
            emit(progress, "advance", "epochs", steps=1,
                 info={"val AUC (best)": _fmt(best), "s/epoch": round(time.perf_counter() - tic, 2)})
    emit(progress, "end", "epochs")
    fitted = []
    for st in states:
        if st.best_state is not None:
            st.plan.head.load_state_dict(st.best_state)
        st.plan.head.eval()
        fitted.append(Fitted(st.plan.head, st.best_epoch, st.epochs_run, st.best_auc, st.curves, st.seconds))
    return fitted


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
