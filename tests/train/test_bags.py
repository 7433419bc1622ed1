"""Bag sampling: disjoint bags, default and fixed M, per-epoch redraws, masks, official replay, batching."""

from __future__ import annotations

import numpy as np
import pytest

from balnmp_cache.errors import CacheError, CohortError
from balnmp_cache.train.bags import (
    PatientRows,
    epoch_rng,
    eval_bags,
    iter_batches,
    official_bag_set,
    sample_bags,
)

COUNTS = [3, 10, 25, 47, 9, 100]


def rows_fixture() -> PatientRows:
    """Six patients with interleaved (non-contiguous) feature rows, as when slides are pooled."""
    rng = np.random.default_rng(0)
    total = sum(COUNTS)
    order = rng.permutation(total)
    lists, start = [], 0
    for n in COUNTS:
        lists.append(order[start : start + n])
        start += n
    return PatientRows.from_lists(lists)


def test_default_m_is_floor_n_over_n_at_least_one_and_bags_are_disjoint():
    pr = rows_fixture()
    bags = sample_bags(pr, np.arange(6), bag_size=10, bags_per_patient=None, rng=epoch_rng(0, 1))
    per_patient = bags.bags_per_patient(6)
    assert per_patient.tolist() == [max(1, n // 10) for n in COUNTS]
    for p in range(6):
        mine = bags.rows[bags.patient == p]
        real = mine[mine >= 0]
        assert len(real) == len(set(real.tolist())), "bags of one patient overlap"
        assert set(real.tolist()) <= set(pr.rows(p).tolist()), "a bag holds another patient's patch"
        assert bags.bag[bags.patient == p].tolist() == list(range(len(mine)))
    # grouped by patient, in the order given
    assert np.all(np.diff(bags.patient) >= 0)


def test_short_patients_get_one_padded_bag_with_a_mask():
    pr = rows_fixture()
    bags = sample_bags(pr, np.arange(6), bag_size=10, bags_per_patient=None, rng=epoch_rng(0, 1))
    for p, n in ((0, 3), (4, 9)):
        [row] = bags.rows[bags.patient == p]
        [mask] = bags.mask[bags.patient == p]
        assert mask.sum() == n and mask[:n].all() and not mask[n:].any()
        assert sorted(row[:n].tolist()) == sorted(pr.rows(p).tolist())
        assert (row[n:] == -1).all()
    full = bags.mask[bags.patient == 5]
    assert full.all()


def test_bags_are_redrawn_every_epoch_and_equal_for_the_same_seed_and_epoch():
    pr = rows_fixture()

    def draw(seed, epoch):
        return sample_bags(pr, np.arange(6), bag_size=10, bags_per_patient=None, rng=epoch_rng(seed, epoch))

    a, b, c, d = draw(0, 1), draw(0, 1), draw(0, 2), draw(1, 1)
    assert np.array_equal(a.rows, b.rows)
    assert not np.array_equal(a.rows, c.rows)
    assert not np.array_equal(a.rows, d.rows)


def test_evaluation_bags_depend_only_on_the_patient():
    pr = rows_fixture()
    ids = ["a", "b", "c", "d", "e", "f"]
    bags = eval_bags(pr, ids, bag_size=10)
    assert bags.bags_per_patient(6).tolist() == [max(1, n // 10) for n in COUNTS]
    assert np.array_equal(bags.rows, eval_bags(pr, ids, bag_size=10).rows)
    for p in range(6):
        mine = bags.rows[bags.patient == p]
        real = mine[mine >= 0]
        assert len(real) == len(set(real.tolist())) == min(COUNTS[p], max(1, COUNTS[p] // 10) * 10)
        assert set(real.tolist()) <= set(pr.rows(p).tolist())
    # the same patient alone (or among others, under another index) gets the same bags
    alone = eval_bags(PatientRows.from_lists([pr.rows(3)]), ["d"], bag_size=10)
    assert np.array_equal(alone.rows, bags.rows[bags.patient == 3])
    renamed = eval_bags(PatientRows.from_lists([pr.rows(3)]), ["z"], bag_size=10)
    assert not np.array_equal(renamed.rows, alone.rows)
    short = bags.rows[bags.patient == 0][0]
    assert (short[:3] >= 0).all() and (short[3:] == -1).all()


def test_fixed_m_gives_every_patient_m_bags_of_distinct_patches():
    pr = rows_fixture()
    bags = sample_bags(pr, np.arange(6), bag_size=10, bags_per_patient=4, rng=epoch_rng(3, 1))
    assert bags.bags_per_patient(6).tolist() == [4] * 6
    for b in range(len(bags)):
        real = bags.rows[b][bags.rows[b] >= 0]
        assert len(real) == len(set(real.tolist()))
    # 47 patches hold 4 disjoint bags of 10: no patch repeats within the patient
    mine = bags.rows[bags.patient == 3]
    assert len(set(mine.ravel().tolist())) == 40
    # 10 patches: one bag per permutation, each bag the patient's 10 patches
    for row in bags.rows[bags.patient == 1]:
        assert sorted(row.tolist()) == sorted(pr.rows(1).tolist())


def test_sampling_a_subset_keeps_given_patient_indices():
    pr = rows_fixture()
    bags = sample_bags(pr, np.array([5, 2]), bag_size=10, bags_per_patient=None, rng=epoch_rng(0, 1))
    assert set(bags.patient.tolist()) == {2, 5}
    assert bags.bags_per_patient(6)[[2, 5]].tolist() == [2, 10]


def test_iter_batches_covers_every_bag_once_and_trims_padding():
    pr = rows_fixture()
    bags = sample_bags(pr, np.arange(6), bag_size=10, bags_per_patient=None, rng=epoch_rng(0, 1))
    batches = list(iter_batches(bags, 4, rng=np.random.default_rng(1)))
    assert sum(len(b) for b in batches) == len(bags)
    seen = np.concatenate([b.rows[:, 0] for b in batches])
    assert sorted(seen.tolist()) == sorted(bags.rows[:, 0].tolist())
    assert [len(b) for b in batches][:-1] == [4] * (len(batches) - 1)
    only_short = bags.take(np.flatnonzero(bags.patient == 0))
    [batch] = list(iter_batches(only_short, 4))
    assert batch.rows.shape == (1, 3) and batch.mask.all()
    again = list(iter_batches(bags, 4, rng=np.random.default_rng(1)))
    assert all(np.array_equal(x.rows, y.rows) for x, y in zip(batches, again, strict=True))


def test_official_bags_replay_through_patch_keys():
    keys = {f"patches/1/1_0_{i}_0.jpg": i for i in range(30)} | {f"patches/2/2_0_{i}_0.jpg": 100 + i for i in range(12)}
    official = {
        "1": [[f"patches/1/1_0_{i}_0.jpg" for i in range(10)], [f"patches/1/1_0_{i}_0.jpg" for i in range(20, 30)]],
        "2": [[f"patches/2/2_0_{i}_0.jpg" for i in range(10)]],
    }
    bags = official_bag_set(["1", "2"], official, keys, source="test json")
    assert bags.rows.tolist() == [list(range(10)), list(range(20, 30)), list(range(100, 110))]
    assert bags.patient.tolist() == [0, 0, 1] and bags.bag.tolist() == [0, 1, 0]


def test_official_bags_with_unknown_keys_or_missing_patients_fail_clearly():
    keys = {f"k{i}": i for i in range(10)}
    with pytest.raises(CacheError, match=r"2 patch key\(s\).*not in the cache.*nope-1, nope-2"):
        official_bag_set(["1"], {"1": [["k1", "nope-1", "nope-2"]]}, keys, source="x.json")
    with pytest.raises(CohortError, match=r"have no bags in x.json: 7"):
        official_bag_set(["1", "7"], {"1": [["k1"]]}, keys, source="x.json")
