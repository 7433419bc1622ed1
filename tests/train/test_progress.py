"""What training shows per epoch: that epoch's loss and validation AUC beside the best so far."""

from __future__ import annotations

import numpy as np
import torch

from balnmp_cache.mil import create_head
from balnmp_cache.progress import ProgressEvent
from balnmp_cache.train.bags import EpochBags, PatientRows, eval_bags
from balnmp_cache.train.engine import FeatureSource
from balnmp_cache.train.fit import FitData, FitSettings, fit


def test_each_epoch_reports_its_own_loss_and_validation_auc_and_the_best_so_far():
    rng = np.random.default_rng(1)
    counts = rng.integers(5, 30, 16)
    labels = np.arange(16) % 2
    features = rng.standard_normal((int(counts.sum()), 6)).astype(np.float32)
    features[:, 0] += np.repeat(labels, counts)  # some signal, so the validation AUC moves
    rows = PatientRows.from_lists(np.split(np.arange(len(features)), np.cumsum(counts)[:-1]))
    train, val = np.arange(10), np.arange(10, 16)
    bags = eval_bags(rows, [str(i) for i in range(16)], bag_size=5)
    data = FitData(labels=labels, train=train, val=val, val_bags=bags.select(val), clinical=None, n_classes=2,
                   train_bags=EpochBags(rows, train, bag_size=5, bags_per_patient=None, batch_bags=4, seed=0))
    settings = FitSettings(optimizer="adam", lr=1e-2, weight_decay=0.0, momentum=0.0, t0=5, t_mult=1,
                           class_weights=False, merge="mean", epochs=5, patience=5, seed=0)
    events: list[ProgressEvent] = []
    head = create_head("abmil", in_dim=6, n_classes=2)
    fitted = fit(head, settings, data, FeatureSource(features, torch.device("cpu"), precision="fp32"),
                 progress=events.append)

    epochs = [e.info for e in events if e.kind == "advance"]
    assert len(epochs) == len(fitted.curves) == 5
    best, best_epoch = -1.0, 0
    for info, curve in zip(epochs, fitted.curves, strict=True):
        assert list(info) == ["loss", "val AUC", "best", "s/epoch"]
        assert info["loss"] == round(curve["train_loss"], 4)
        assert info["val AUC"] == f"{curve['val_auc']:.3f}"
        if curve["best"]:
            best, best_epoch = curve["val_auc"], curve["epoch"]
        assert info["best"] == f"{best:.3f} @ {best_epoch}"
    assert len({info["loss"] for info in epochs}) > 1  # the epoch's own figure, not a running best
