"""Shards: every slide in exactly one shard, the same split in every process, balanced by size."""

from __future__ import annotations

import random

import pytest

from balnmp_cache.errors import ConfigError
from balnmp_cache.extract import ExtractConfig
from balnmp_cache.extract.plan import resolve_jobs
from balnmp_cache.shards import parse_shard, select_shard, shard_of
from tests.extract.conftest import write_precut_cohort


def test_every_item_is_in_exactly_one_shard_in_its_original_order():
    items = [f"s{i:03d}" for i in range(97)]
    weights = {item: (i * 37) % 101 + 1 for i, item in enumerate(items)}
    shards = [select_shard(items, i, 5, weight=weights.__getitem__) for i in range(5)]
    assert sorted(x for shard in shards for x in shard) == items
    assert all(shard == sorted(shard) for shard in shards)  # the original order is kept
    assert shards == [select_shard(list(items), i, 5, weight=weights.__getitem__) for i in range(5)]


@pytest.mark.parametrize("seed", range(5))
def test_shards_are_balanced_by_weight(seed):
    rng = random.Random(seed)
    weights = [int(rng.lognormvariate(3.6, 1.0)) + 1 for _ in range(1058)]  # BCNB-like patch counts
    for count in (2, 4, 16):
        loads = [0] * count
        for w, shard in zip(weights, shard_of(weights, count), strict=True):
            loads[shard] += w
        best = max(sum(weights) / count, max(weights))  # no split can do better than this
        assert max(loads) <= best * 4 / 3 + 1  # the LPT bound
        assert max(loads) - min(loads) <= max(weights)


def test_one_shard_is_everything_and_a_bad_shard_is_refused():
    assert select_shard([3, 1, 2], 0, 1, weight=float) == [3, 1, 2]
    assert parse_shard(" 2/4 ") == (2, 4)
    for bad in ("4/4", "-1/4", "1", "a/b", "1/0"):
        with pytest.raises(ConfigError, match="--shard 0/4"):
            parse_shard(bad)
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_ID"):
        ExtractConfig(shard="3/3")
    assert ExtractConfig(shard="01/3").shard == "1/3"


def test_extract_shards_cover_the_cohort(tmp_path):
    patches = write_precut_cohort(tmp_path / "bcnb", [5, 1, 1, 8, 2, 3, 1, 4, 2, 6])
    ids = sorted(p.name for p in patches.iterdir())
    shards = [resolve_jobs(ExtractConfig(sources=[patches], shard=f"{i}/3")) for i in range(3)]
    assert sorted(job.slide_id for shard in shards for job in shard) == ids
    sizes = [sum(len(job.patch_files) for job in shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 8  # balanced by bytes, the largest patient is 8 patches
