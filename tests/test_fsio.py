"""The shared atomic-write helper and the natural sort key."""

from __future__ import annotations

from pathlib import Path

import pytest

from balnmp_cache.fsio import atomic_path, atomic_write_text
from balnmp_cache.sorting import natural_key, natural_sorted


def test_atomic_write_replaces_whole_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "old\n")
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("complete\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk gone")
    assert target.read_text() == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_two_temporaries_for_one_target_differ(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "a") as first, atomic_path(tmp_path / "a") as second:
        assert first != second and first.name.startswith(".a.")
        first.write_text("1")
        second.write_text("2")
    assert (tmp_path / "a").read_text() == "1"  # the outer block renames last


def test_natural_order() -> None:
    assert natural_sorted(["10", "2", "1", "a10", "a2", "10a"]) == ["1", "2", "10", "10a", "a2", "a10"]
    assert natural_key("slide_2") < natural_key("slide_10")
