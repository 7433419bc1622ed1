"""Issue 8, item 2: two ``ablate`` processes on one grid share its runs instead of each training all of them.

A real second process: ``ablate`` in a child is stopped (SIGSTOP) while it holds its first run, this
process runs ``ablate`` on the same grid, trains the other runs and waits for the held one; the
child is continued once they are done. Every run is trained exactly once and both end with the
complete tables.
"""

from __future__ import annotations

import re
import signal
import threading
from pathlib import Path

from balnmp_cache import runs
from balnmp_cache.config import load_config
from balnmp_cache.train.ablate import AblationGrid, expand_grid

from .conftest import run_cli
from .runs_support import leftovers, start_cli, tiny_study, wait_for

__all__ = ["tiny_study"]  # fixture used here

GRID = """
out = "{out}"
[base]
cache = "{cache}"
cohort = "{cohort}"
epochs = 2
patience = 2
batch_bags = 16
threads = 1
device = "cpu"
clinical = false
[grid]
seed = [0, 1, 2]
"""


def _trained(stderr: str) -> list[str]:
    return re.findall(r"INFO\s+training (task0-[^\s/]+)\s*$", stderr, flags=re.MULTILINE)


def test_two_ablate_processes_on_one_grid_share_its_runs(tiny_study, tmp_path: Path) -> None:
    out = tmp_path / "ablation"
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.format(out=out, cache=tiny_study.cache_dir, cohort=tiny_study.cohort_csv))
    child = start_cli("ablate", grid)
    try:
        wait_for(lambda: (out / "runs").is_dir() and leftovers(out / "runs") != [], what="the child's first run")
        child.send_signal(signal.SIGSTOP)  # it holds the lock of its first run
        (held,) = [name.split(".tmp-")[0][1:] for name in leftovers(out / "runs")]
        names = [run.name for run in expand_grid(load_config(AblationGrid, grid))]
        others = [out / "runs" / name for name in names if name != held]
        assert held in names and len(others) == 2

        def resume_when_the_others_are_done() -> None:
            wait_for(lambda: all(runs.is_finished(d) for d in others), what="the other runs")
            child.send_signal(signal.SIGCONT)

        waiter = threading.Thread(target=resume_when_the_others_are_done, daemon=True)
        waiter.start()
        mine = run_cli("ablate", grid)
        waiter.join(timeout=60)
    finally:
        child.send_signal(signal.SIGCONT)
    child_out, child_err = child.communicate(timeout=120)
    assert mine.exit_code == 0 and child.returncode == 0, (mine.stderr[-2000:], child_err[-2000:])
    assert re.search(rf"{re.escape(held)}: busy, left to the other process", mine.stderr)
    assert _trained(child_err) == [held] and held not in _trained(mine.stderr)
    assert sorted(_trained(child_err) + _trained(mine.stderr)) == sorted(names)  # each run trained once
    for stdout in (mine.stdout, child_out):  # both tables are complete: one configuration over 3 seeds
        assert _column(stdout, "seeds") == ["3"], stdout
    assert (out / "results.csv").read_text().count("\n") == 2 and (out / "runs.csv").read_text().count("\n") == 4
    assert leftovers(out / "runs") == []


def _column(table: str, header: str) -> list[str]:
    """The cells under ``header`` in a summary table: columns are two or more spaces apart, and rows have
    as many cells as the header line."""
    lines = [re.split(r"\s{2,}", line.strip()) for line in table.splitlines() if line.strip()]
    at = next(i for i, cells in enumerate(lines) if header in cells)
    names = lines[at]
    return [cells[names.index(header)] for cells in lines[at + 1:] if len(cells) == len(names)]
