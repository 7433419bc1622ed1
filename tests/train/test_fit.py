"""Pieces of the trainer: the CPU dropout swap, evaluation batch sizing, one fit's random streams."""

from __future__ import annotations

import numpy as np
import torch

from balnmp_cache.mil import create_head
from balnmp_cache.train.bags import EpochBags, PatientRows, eval_bags
from balnmp_cache.train.engine import FeatureSource, eval_batch_size, fast_dropout
from balnmp_cache.train.fit import FitData, FitSettings, fit


def test_fast_dropout_keeps_the_distribution_and_puts_the_modules_back():
    head = create_head("balnmp", in_dim=8, n_classes=2)
    before = [type(m) for m in head.modules()]
    state = {k: v.clone() for k, v in head.state_dict().items()}
    with fast_dropout(head):
        swapped = [m for m in head.modules() if type(m).__name__ == "_RandDropout"]
        assert len(swapped) == 3 and all(m.p == 0.5 for m in swapped)
        drop = swapped[0].train()
        x = torch.ones(200_000)
        y = drop(x)
        kept = (y != 0).float().mean().item()
        assert abs(kept - 0.5) < 0.01 and set(y.unique().tolist()) == {0.0, 2.0}
        assert torch.equal(drop.eval()(x), x)
    assert [type(m) for m in head.modules()] == before
    assert all(torch.equal(v, state[k]) for k, v in head.state_dict().items())


def test_evaluation_batches_stay_under_32_mib():
    assert eval_batch_size(10, 512) == 256
    assert eval_batch_size(10, 25088) * 10 * 25088 * 4 <= 32 << 20
    assert eval_batch_size(10**6, 25088) == 1


def _tiny_fit(seed: int) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Two epochs of a dropout-heavy head on 12 random patients, bags of a fixed seed -> (weights, losses)."""
    rng = np.random.default_rng(0)
    counts = rng.integers(5, 30, 12)
    features = rng.standard_normal((int(counts.sum()), 6)).astype(np.float32)
    rows = PatientRows.from_lists(np.split(np.arange(len(features)), np.cumsum(counts)[:-1]))
    labels = np.arange(12) % 2
    train, val = np.arange(8), np.arange(8, 12)
    bags = eval_bags(rows, [str(i) for i in range(12)], bag_size=5)
    data = FitData(labels=labels, train=train, val=val, val_bags=bags.select(val), clinical=None, n_classes=2,
                   train_bags=EpochBags(rows, train, bag_size=5, bags_per_patient=None, batch_bags=4, seed=4))
    settings = FitSettings(optimizer="adam", lr=1e-2, weight_decay=0.0, momentum=0.0, t0=5, t_mult=1,
                           class_weights=False, merge="mean", epochs=2, patience=2, seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        head = create_head("balnmp", in_dim=6, n_classes=2, dropout=0.5)
    fitted = fit(head, settings, data, FeatureSource(features, torch.device("cpu"), precision="fp32"))
    return fitted.head.state_dict(), [row["train_loss"] for row in fitted.curves]


def test_a_fit_draws_dropout_from_its_seed_and_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    weights, losses = _tiny_fit(seed=4)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's stream is untouched
    again, again_losses = _tiny_fit(seed=4)
    assert losses == again_losses and all(torch.equal(v, again[k]) for k, v in weights.items())
    _, other_losses = _tiny_fit(seed=5)  # the same bags, another seed: other dropout masks
    assert other_losses != losses
