"""Issue 8, item 3: two collections whose slides share file names never overwrite each other silently.

``extract colA --out X`` then ``extract colB --out X`` with ``a.jpg`` in both: colB's slide fails
with a reason naming ``--force`` and ``--slide-id-prefix``, exit 1, and colA's file and manifest
stay byte-identical. ``--force`` replaces it; ``--slide-id-prefix`` keeps both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from balnmp_cache.cache import load_cache, read_manifest, read_slide, verify_cache

from .conftest import EXTRACT_ARGS, digests, run_cli, write_tiny_slide


def _col_b(tmp_path: Path) -> Path:
    """Another collection holding another slide named ``a.jpg``."""
    folder = tmp_path / "colB"
    write_tiny_slide(folder / "a.jpg", offset=64, seed=7)
    return folder


def _slide_files_and_manifest(cache_dir: Path) -> dict[str, str]:
    return {name: digest for name, digest in digests(cache_dir).items() if name != "config.toml"}


def test_a_slide_of_another_collection_with_the_same_id_is_refused_and_nothing_changes(
    copy_cache: Callable[..., Path], tiny_slides: Path, tmp_path: Path
) -> None:
    cache_dir = copy_cache()
    col_b = _col_b(tmp_path)
    before = _slide_files_and_manifest(cache_dir)

    result = run_cli("extract", col_b, "--out", cache_dir.parent, *EXTRACT_ARGS)
    assert result.exit_code == 1
    reason = (
        f"slide id 'a' is already in the cache from {tiny_slides / 'a.jpg'}, a different slide than {col_b / 'a.jpg'}; "
        "re-run with --force to replace it, or with --slide-id-prefix PREFIX to keep both"
    )
    assert reason in result.stdout  # the run's summary row: failed, with the reason
    assert f"a failed: {reason}" in result.stderr and "0 ok, 0 already complete, 0 empty, 1 failed" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    assert _slide_files_and_manifest(cache_dir) == before
    assert read_slide(cache_dir / "a.h5").attrs["source_path"] == str(tiny_slides / "a.jpg")
    assert verify_cache(cache_dir) == []


def test_force_replaces_the_other_collections_slide(copy_cache: Callable[..., Path], tmp_path: Path) -> None:
    cache_dir = copy_cache()
    col_b = _col_b(tmp_path)
    untouched = digests(cache_dir)["b.h5"]
    result = run_cli("extract", col_b, "--out", cache_dir.parent, "--force", *EXTRACT_ARGS)
    assert result.exit_code == 0 and "1 ok" in result.stdout
    assert read_slide(cache_dir / "a.h5").attrs["source_path"] == str(col_b / "a.jpg")
    assert digests(cache_dir)["b.h5"] == untouched
    assert {r.slide_id: r.source for r in read_manifest(cache_dir)}["a"] == str(col_b / "a.jpg")


def test_a_slide_id_prefix_keeps_both_collections(copy_cache: Callable[..., Path], tmp_path: Path) -> None:
    cache_dir = copy_cache()
    col_b = _col_b(tmp_path)
    before = digests(cache_dir)
    result = run_cli("extract", col_b, "--out", cache_dir.parent, "--slide-id-prefix", "colB-", *EXTRACT_ARGS)
    assert result.exit_code == 0, result.stderr
    assert all(digests(cache_dir)[name] == before[name] for name in ("a.h5", "b.h5"))
    cache = load_cache(cache_dir)
    assert cache.slide_ids == ["a", "b", "colB-a"] and cache.patient_ids == ["a", "b", "colB-a"]
    assert read_slide(cache_dir / "colB-a.h5").attrs["source_path"] == str(col_b / "a.jpg")
    assert verify_cache(cache_dir) == []
