"""--shard i/N: disjoint, complete, deterministic and size-balanced."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from balnmp_cache.errors import ConfigError
from balnmp_cache.nuclei.config import parse_shard
from balnmp_cache.shards import job_weight, select_shard


@dataclass(frozen=True)
class Job:
    slide_id: str
    size: float


def test_shards_partition_the_jobs_and_balance_them():
    jobs = [Job(str(i), float((i * 37) % 101 + 1)) for i in range(60)]
    parts = [select_shard(jobs, i, 4, weight=lambda j: j.size) for i in range(1, 5)]
    ids = [j.slide_id for part in parts for j in part]
    assert sorted(ids) == sorted(j.slide_id for j in jobs)  # every slide once
    loads = [sum(j.size for j in part) for part in parts]
    assert max(loads) - min(loads) <= max(j.size for j in jobs)  # LPT: within one job of each other
    assert parts[0] == select_shard(jobs, 1, 4, weight=lambda j: j.size)  # deterministic
    assert all(part == sorted(part, key=jobs.index) for part in parts)  # input order kept


def test_shard_of_one_is_everything_and_bad_shards_are_refused():
    jobs = [Job("a", 1.0), Job("b", 2.0)]
    assert select_shard(jobs, 1, 1) == jobs
    with pytest.raises(ConfigError, match="--shard"):
        select_shard(jobs, 3, 2)
    assert parse_shard("2/5") == (2, 5)
    for bad in ("0/2", "3/2", "1-2", "a/b", "2"):
        with pytest.raises(ValueError, match="i/N"):
            parse_shard(bad)


def test_job_weight_is_patch_count_or_file_size(tmp_path):
    path = tmp_path / "s.jpg"
    path.write_bytes(b"x" * 1234)

    @dataclass
    class Slide:
        path: object
        patch_files: tuple = ()

    assert job_weight(Slide(path)) == 1234
    assert job_weight(Slide(tmp_path, ("a", "b", "c"))) == 3
