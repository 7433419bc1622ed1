"""Pieces of the training loop: the CPU dropout swap, evaluation batch sizing, per-model random streams."""

from __future__ import annotations

import torch

from balnmp_cache.mil import create_head
from balnmp_cache.train.engine import RngSlot, eval_batch_size, fast_dropout


def test_fast_dropout_keeps_the_distribution_and_puts_the_modules_back():
    head = create_head("balnmp", in_dim=8, n_classes=2)
    before = [type(m) for m in head.modules()]
    state = {k: v.clone() for k, v in head.state_dict().items()}
    with fast_dropout([head]):
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


def test_rng_slots_are_independent_streams():
    a, b = RngSlot(1, torch.device("cpu")), RngSlot(1, torch.device("cpu"))
    with a.active():
        first = torch.rand(3)
    with b.active():
        other = torch.rand(3)
    with a.active():
        second = torch.rand(3)
    assert torch.equal(first, other) and not torch.equal(first, second)
