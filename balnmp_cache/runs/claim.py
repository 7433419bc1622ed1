"""One writer per run directory, and a run built beside its directory then swapped in: :func:`claim_run`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from balnmp_cache.errors import ConfigError
from balnmp_cache.fsio import describe_os_error
from balnmp_cache.outdir import OutputWriteError, Staged, staged_dir
from balnmp_cache.runs.files import check_free_space, is_finished, read_run
from balnmp_cache.runs.records import FILE_NAMES

__all__ = ["RUN_EXTRAS", "RunExistsError", "claim_run"]

log = logging.getLogger(__name__)

RUN_EXTRAS = ("train.log", "predict", "heatmaps")
"""What a run directory may hold besides its files: the log older versions kept inside, the default outputs of
``predict`` and ``heatmap`` (they describe this run's model, and go with it when ``--force`` replaces it)."""

_LISTED = 5


class RunExistsError(ConfigError):
    """The run directory already holds a finished run and ``force`` was not given."""


def _describe(run_dir: Path) -> str:
    try:
        record = read_run(run_dir)
    except ConfigError:
        return "a finished run"
    test_auc = record.metrics.get("test", {}).get("auc")
    auc = "" if test_auc is None else f", test AUC {test_auc:.3f}"
    return f"a finished run (task {record.task}: {record.task_name}, head {record.head}{auc})"


def _checker(force: bool) -> Callable[[Path], None]:
    """The check :func:`~balnmp_cache.outdir.staged_dir` runs on the run directory under its lock."""

    def check(target: Path) -> None:
        if not target.exists():
            return
        if not target.is_dir():
            raise ConfigError(f"--out {target} is a file; a run directory is a folder: choose another --out")
        names = sorted(p.name for p in target.iterdir())
        foreign = [n for n in names if n not in FILE_NAMES and n not in RUN_EXTRAS]
        if foreign:
            more = f" and {len(foreign) - _LISTED} more" if len(foreign) > _LISTED else ""
            raise ConfigError(
                f"--out {target} is not a run directory: it holds {', '.join(foreign[:_LISTED])}{more}, which train "
                "did not write; choose another --out (train never deletes what it did not write)"
            )
        if not names:
            return
        if not is_finished(target):
            log.info("%s holds an unfinished run (no complete run.json): it is replaced", target)
        elif force:
            log.info("%s holds %s: it is replaced (--force)", target, _describe(target))
        else:
            raise RunExistsError(
                f"{target} already holds {_describe(target)}; pass --force (key 'force = true') to replace it, "
                "or choose another --out"
            )

    return check


@contextmanager
def claim_run(run_dir: Path, *, force: bool = False, wait: bool = False) -> Iterator[Staged]:
    """Become the one writer of ``run_dir`` and get a staging folder to build the new run in.

    Write the run into ``staged.staging`` (:func:`~balnmp_cache.runs.write_run`), then call
    ``staged.commit()``: the complete run replaces ``run_dir`` in one rename. Without ``commit``
    (an error, an interrupt) the staging folder is removed and ``run_dir`` is as it was; after a
    ``kill -9`` the next writer removes it. See :mod:`balnmp_cache.outdir`.

    Args:
        run_dir: the run directory (``--out``).
        force: replace a finished run; without it a finished run is refused (:class:`RunExistsError`).
            An unfinished one (no complete ``run.json``) is always replaced. A folder holding anything
            but a run's files is always refused.
        wait: wait for another writer of ``run_dir`` instead of refusing at once.

    Raises:
        OutputBusyError: another process writes ``run_dir`` (without ``wait``).
        RunExistsError: ``run_dir`` holds a finished run and ``force`` is false.
        ConfigError: ``run_dir`` is a file or a folder with other content.
        OutputWriteError: the lock or the staging folder cannot be written, or the disk has less than
            :data:`~balnmp_cache.runs.FREE_SPACE_RESERVE` free.
    """
    with staged_dir(run_dir, writer="train", check=_checker(force), wait=wait) as staged:
        try:  # a full disk is refused before the training, not after it
            check_free_space(staged.staging, 0)
        except OSError as err:
            raise OutputWriteError(describe_os_error(err, staged.target)) from err
        yield staged
