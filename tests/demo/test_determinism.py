"""Same seed, same bytes; another seed, another cohort."""

from __future__ import annotations

from pathlib import Path

import pytest

from balnmp_cache.demo import write_demo_cohort


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob(pattern))}


@pytest.fixture(scope="module")
def three_cohorts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("determinism")
    for name, seed in (("a", 11), ("b", 11), ("c", 12)):
        write_demo_cohort(base / name, patients=3, seed=seed)
    return base / "a", base / "b", base / "c"


def test_same_seed_writes_identical_files(three_cohorts: tuple[Path, Path, Path]) -> None:
    import pandas as pd

    a, b, _ = three_cohorts
    for pattern in ("WSIs/*", "WSIs-pyramidal/*", "dataset-splitting/*", "README.txt", "demo-cohort.json"):
        files_a, files_b = _files(a, pattern), _files(b, pattern)
        assert files_a and files_a.keys() == files_b.keys()
        for name in files_a:
            assert files_a[name] == files_b[name], name
    # xlsx files embed a timestamp: compare the table contents.
    pd.testing.assert_frame_equal(pd.read_excel(a / "patient-clinical-data.xlsx"),
                                  pd.read_excel(b / "patient-clinical-data.xlsx"))


def test_other_seed_writes_another_cohort(three_cohorts: tuple[Path, Path, Path]) -> None:
    import pandas as pd

    a, _, c = three_cohorts
    for name in ("1.jpg", "1.json", "2.jpg", "3.json"):
        assert (a / "WSIs" / name).read_bytes() != (c / "WSIs" / name).read_bytes()
    assert not pd.read_excel(a / "patient-clinical-data.xlsx").equals(pd.read_excel(c / "patient-clinical-data.xlsx"))


def test_patients_do_not_depend_on_generation_order(tmp_path: Path) -> None:
    """A patient's slide depends on (seed, id, label) only, not on the threads or the cohort size."""
    from balnmp_cache.demo.cohort import _write_slide

    for name in ("x", "y"):
        (tmp_path / name / "WSIs").mkdir(parents=True)
    _write_slide(tmp_path / "x", 4, 9, "N+(>2)", False)
    _write_slide(tmp_path / "x", 4, 2, "N0", False)
    _write_slide(tmp_path / "y", 4, 2, "N0", False)
    assert (tmp_path / "x" / "WSIs" / "2.jpg").read_bytes() == (tmp_path / "y" / "WSIs" / "2.jpg").read_bytes()
